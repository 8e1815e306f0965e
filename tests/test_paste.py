"""Paste anything: /search with an alert, log lines or JSON (real PostgreSQL), and what
app/model/paste.py finds in a text."""

from __future__ import annotations

from uuid import UUID

import pytest

from app.model.paste import extract
from app.model.search import MAX_QUERY
from tests.fleet import ALIVE, DEAD, mid
from tests.support import cloned_database, webug_client

EQ_UUID = UUID("3f2504e0-4f89-41d3-9a0c-0305e82c3301")  # an Equinix provider ID is a UUID

# ---- what a text names -----------------------------------------------------------------


def test_ids_in_any_case_inside_punctuation_dashed_or_not():
    text = (
        f'alert: machine ({str(mid(1)).upper()}) failed; {{"id":"{mid(2)}"}}\n'
        f"[{str(mid(3)).replace('-', '')}] <{mid(4)}>, id={str(mid(5)).upper()}."
    )
    assert list(extract(text).ids) == [mid(n) for n in range(1, 6)]


def test_runs_of_hex_longer_than_an_id_are_not_ids():
    sha = "3f2504e04f8941d39a0c0305e82c33012b4c7d91"  # a git hash: 40 hex digits
    found = extract(f"commit {sha} trace 3f2504e0-4f89-41d3-9a0c-0305e82c3301ab half 3f2504e0")
    assert found.ids == {}


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("ssh 10.0.0.1:22 refused", "10.0.0.1"),
        ("host 10.0.0.1.", "10.0.0.1"),
        ("net 10.0.0.1/24", "10.0.0.1"),
        ('{"ip":"10.0.0.1"}', "10.0.0.1"),
        ("ip=10.0.0.1,", "10.0.0.1"),
        ("v6 [2001:DB8::1]:443", "2001:db8::1"),
        ("v6 2001:0db8:0000:0000:0000:0000:0000:0001 up", "2001:db8::1"),
        ("link fe80::1%eth0", "fe80::1"),
        ("loopback ::1.", "::1"),
    ],
)
def test_ip_addresses_with_ports_zones_brackets_and_punctuation(text, address):
    assert address in extract(text).ips


@pytest.mark.parametrize(
    "text",
    [
        "at 12:34:56.789Z",  # a time
        "mac aa:bb:cc:dd:ee:ff",
        "version 1.2.3.4.5",
        "octets 999.1.1.1",
        "std::vector<int>",
        "2024-01-02T03:04:05Z",
    ],
)
def test_noise_is_no_ip_address(text):
    assert extract(text).ips == {}


def test_words_split_at_equals_and_slashes_without_sentence_ends():
    text = "provider_id=Lumen-000123. see https://console.equinix.com/devices/dev-9/overview:"
    words = extract(text).words
    assert {"lumen-000123", "dev-9", "overview", "console.equinix.com"} <= set(words)
    assert ":" not in words and "" not in words


# ---- /search with a text -----------------------------------------------------------------


@pytest.fixture(scope="module")
def client(small_fleet_dsn):
    with webug_client(small_fleet_dsn) as c:
        yield c


def search(client, q: str, **params: str):
    return client.get("/search", params={"q": q, **params}, follow_redirects=False)


ALERT = f"""[FIRING:3] MachineNotProgressing (severity=page)
  machine_id={str(mid(3)).upper()} provider=Equinix
  summary: ssh to 10.0.0.1:22 refused since 12:03:11 (retry 3/5)
  labels: {{"provider_id": "LUMEN-0002", "dc": "ny7", "build": "1.2.3.4.5"}}
  runbook: https://wiki.example.com/runbooks/0000ffff-dead-beef
"""


def test_an_alert_leads_to_a_watch_list_of_exactly_its_machines_in_its_order(client):
    response = search(client, ALERT)
    assert response.status_code == 303
    # mid(3) by ID, mid(1) by IP, mid(2) by provider ID (upper case in the alert).
    assert response.headers["location"] == f"/watch?ids={mid(3)},{mid(1)},{mid(2)}"
    body = search(client, ALERT, format="json").json()
    assert body["machines"] == [str(mid(n)) for n in (3, 1, 2)]
    assert body["pasted"] is True and body["redirect"] == body["watch_url"]
    assert {(m["kind"], m["id"]) for m in body["matches"]} == {
        ("machine", str(mid(3))),
        ("ip", str(mid(1))),
        ("provider_id", str(mid(2))),
    }
    assert all(m["exact"] for m in body["matches"])
    assert len(body["queries"]) == 1


def test_sessions_too_show_the_list_which_links_the_watch_list(client):
    text = ALERT + f"\nholder session {str(DEAD).upper()}"
    page = search(client, text)
    assert page.status_code == 200
    assert f'href="/watch?ids={mid(3)},{mid(1)},{mid(2)}">Watch these 3 machines</a>' in page.text
    assert f'<a href="/session/{DEAD}">' in page.text and "shepherd-lumen · expired" in page.text


def test_one_machine_named_twice_opens_it(client):
    text = f"2024-05-01 12:00:01 ERROR machine {mid(2)} (lumen-0002) agent lost, ip 10.0.0.2"
    response = search(client, text)
    assert response.status_code == 303 and response.headers["location"] == f"/machine/{mid(2)}"


def test_one_session_in_a_log_line_opens_it(client):
    response = search(client, f"lease held by session={ALIVE} expired")
    assert response.status_code == 303 and response.headers["location"] == f"/session/{ALIVE}"


def test_text_without_anything_known_is_nothing_found_and_says_what_it_looked_for(client):
    noise = "disk /dev/sda1 at 91% on 12:34:56, mac aa:bb:cc:dd:ee:ff, build 1.2.3.4.5 eq-"
    page = search(client, noise)
    assert page.status_code == 404
    assert "Nothing found" in page.text
    assert "Looked up 0 IDs as machine and session IDs, 0 forms of IP addresses" in page.text


def test_a_prefix_in_a_text_is_not_searched(client):
    # Alone, "0000000b" opens mid(11); inside a sentence, only whole IDs count.
    assert search(client, "0000000b").status_code == 303
    inside = search(client, "stuck: 0000000b since noon")
    assert inside.status_code == 404 and "<b>Nothing found</b>" in inside.text


# ---- long texts: GET up to 16 KiB, POST ------------------------------------------------------


def padded(text: str, size: int) -> str:
    """`text` among log noise, `size` bytes in all."""
    line = "INFO heartbeat ok component=shepherd latency=3ms\n"
    noise = line * (size // len(line) + 1)
    return (noise[: size - len(text) - 1] + "\n" + text)[:size]


def test_a_16_kib_log_excerpt_by_get(client):
    text = padded(f"ERR machine {mid(7)} down; also {mid(8)}", MAX_QUERY)
    assert len(text.encode()) == MAX_QUERY
    response = search(client, text)
    assert response.status_code == 303
    assert response.headers["location"] == f"/watch?ids={mid(7)},{mid(8)}"


def test_post_a_form_or_plain_text(client):
    text = padded(f"ERR machine {mid(7)} down; also {mid(8)}", MAX_QUERY)
    form = client.post("/search", data={"q": text}, follow_redirects=False)
    assert form.status_code == 303 and form.headers["location"] == f"/watch?ids={mid(7)},{mid(8)}"
    plain = client.post(
        "/search?format=json", content=text.encode(), headers={"Content-Type": "text/plain"}
    )
    assert plain.status_code == 200 and plain.json()["machines"] == [str(mid(7)), str(mid(8))]


def test_the_search_page_posts_its_text_area(client):
    page = client.get("/search").text
    assert '<form class="paste-form" method="post" action="/search"' in page
    assert f'<textarea name="q" rows="8" cols="100" maxlength="{MAX_QUERY}"' in page


def test_post_bounds_and_refusals(client):
    too_long = client.post("/search", data={"q": "é" * (MAX_QUERY // 2 + 1)})
    assert too_long.status_code == 400 and "at most 16384" in too_long.text
    plain = {"Content-Type": "text/plain"}
    huge = client.post("/search", content=b"a" * (4 * MAX_QUERY), headers=plain)
    assert huge.status_code == 413
    json_body = client.post("/search", json={"q": "x"})
    assert json_body.status_code == 415
    bad = client.post("/search", content=b"\xff\xfe", headers=plain)
    assert bad.status_code == 400 and "UTF-8" in bad.text
    elsewhere = client.post(
        "/search", data={"q": str(mid(1))}, headers={"Origin": "https://evil.example"}
    )
    assert elsewhere.status_code == 403


def test_control_characters_other_than_line_ends_are_refused(client):
    assert search(client, f"line one\r\n\tline two {mid(1)}").status_code == 303
    refused = search(client, f"colour \x1b[31m{mid(1)}")
    assert refused.status_code == 400 and "control characters" in refused.text


# ---- reservations, IPv6, shared values, provider IDs that are UUIDs ----------------------

R1, R2, R3, R4 = (UUID(f"0e000000-0000-4000-8000-00000000000{n}") for n in (1, 2, 3, 4))
OWN_ROWS = [
    f"""INSERT INTO machines (machine_id, machine_created_at) VALUES
        ('{R1}', now()), ('{R2}', now()), ('{R3}', now()), ('{R4}', now())""",
    f"""INSERT INTO machine_provided (machine_id, provider, provider_id,
            provider_reservation_id, provider_ip_address) VALUES
        ('{R1}', 'Equinix', '{EQ_UUID}', 'Res-Shared', '192.0.2.7'),
        ('{R2}', 'Lumen', 'Dev-10', 'Res-Shared', '192.0.2.8'),
        ('{R3}', 'Lumen', 'dev-2', 'res-own', '2001:db8::1'),
        ('{R4}', 'Lumen', 'dev-4', NULL, '2001:DB8::A')""",
]


@pytest.fixture(scope="module")
def own(pg_server_dsn, migrated_template):
    with (
        cloned_database(pg_server_dsn, migrated_template, *OWN_ROWS) as dsn,
        webug_client(dsn) as c,
    ):
        yield c


def test_reservation_ids_ipv6_and_uuid_provider_ids_in_a_text(own):
    text = f"Provider says: device {str(EQ_UUID).upper()} and RES-OWN; [2001:DB8::1]:22"
    body = search(own, text, format="json").json()
    assert {(m["kind"], m["id"], m["matched"]) for m in body["matches"]} == {
        ("provider_id", str(R1), str(EQ_UUID)),
        ("reservation_id", str(R3), "res-own"),
        ("ip", str(R3), "2001:db8::1"),
    }
    assert body["machines"] == [str(R1), str(R3)]
    assert search(own, text).headers["location"] == f"/watch?ids={R1},{R3}"


def test_an_address_stored_in_upper_case(own):
    response = search(own, "neighbour 2001:db8:0:0:0:0:0:a unreachable")
    assert response.status_code == 303 and response.headers["location"] == f"/machine/{R4}"


def test_one_shared_value_lists_its_machines_with_a_watch_link(own):
    # One value of the text naming two machines: which one was meant? The list says.
    page = search(own, "reservation res-shared failed")
    assert page.status_code == 200
    assert "Machines by provider reservation ID" in page.text
    assert f'href="/watch?ids={R1},{R2}">Watch these 2 machines</a>' in page.text


def test_mixed_case_provider_ids_match_exactly_never_in_part(own):
    assert search(own, "DEV-10 is down", format="json").json()["machines"] == [str(R2)]
    part = search(own, "dev-1 is down")  # not a prefix of dev-10
    assert part.status_code == 404 and "<b>Nothing found</b>" in part.text
