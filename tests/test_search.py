"""Search and hot links: /search?q= and resolve_machine_prefix (real PostgreSQL)."""

from __future__ import annotations

import re
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from app.model.ids import parse_tokens
from app.model.search import LIMIT
from tests.fleet import ALIVE, DEAD, MACHINES, mid
from tests.support import cloned_database, execute, run_sync, webug_client

NO_REDIRECT = {"follow_redirects": False}


@pytest.fixture(scope="module")
def client(small_fleet_dsn):
    with webug_client(small_fleet_dsn) as c:
        yield c


def search(client: TestClient, q: str, **params: str):
    return client.get("/search", params={"q": q, **params}, follow_redirects=False)


def assert_redirect(response, url: str) -> None:
    assert response.status_code == 303, (response.status_code, response.text[:300])
    assert response.headers["location"] == url


def linked_ids(html: str) -> list[str]:
    """The machine and session links of the result tables, in order."""
    return re.findall(r'<td class="id"><a href="(/(?:machine|session)/[0-9a-f-]{36})"', html)


def assert_nothing_found(response, q: str) -> None:
    """What the user sees when nothing matched: a 404 that says so, with their query and
    no machine or session linked (a broken route or page would be a 404 too)."""
    assert response.status_code == 404, (response.status_code, response.text[:300])
    assert f"<b>Nothing found</b> for <code>{escape(q)}</code>" in response.text
    assert linked_ids(response.text) == []


# ---- machine IDs -------------------------------------------------------------------------


def test_unique_machine_prefix_redirects_to_the_machine(client):
    assert_redirect(search(client, "00000003"), f"/machine/{mid(3)}")
    assert_redirect(search(client, str(mid(7))), f"/machine/{mid(7)}")


def test_machine_prefix_with_uppercase_and_dashes(client):
    assert_redirect(search(client, "0000000C-0000"), f"/machine/{mid(12)}")
    assert_redirect(search(client, str(mid(12)).upper()), f"/machine/{mid(12)}")
    assert_redirect(search(client, str(mid(12)).replace("-", "")), f"/machine/{mid(12)}")
    assert_redirect(search(client, "  `0000000b`  "), f"/machine/{mid(11)}")  # pasted from chat


def test_ambiguous_prefix_lists_every_machine_and_session(client):
    page = search(client, "0000")
    assert page.status_code == 200
    links = linked_ids(page.text)
    assert links == [f"/machine/{mid(n)}" for n in range(1, 13)] + [
        f"/session/{ALIVE}",
        f"/session/{DEAD}",
    ]
    assert "Machines by ID" in page.text and "Sessions by ID" in page.text
    assert "Equinix eq-aaa · IP 10.0.0.1" in page.text  # which machine is which
    assert "not provided" in page.text
    assert f'data-copy="{mid(5)}"' in page.text


def test_machine_prefix_matching_nothing_is_404(client):
    assert_nothing_found(search(client, "ffff"), "ffff")


def test_too_short_prefix_is_not_an_id_prefix(client):
    page = search(client, "000")
    assert page.status_code == 404
    assert "need at least 4 hex digits" in page.text
    assert search(client, "0000").status_code == 200  # four is enough


# ---- sessions ----------------------------------------------------------------------------


def test_unique_session_prefix_redirects_to_the_session(client):
    assert_redirect(search(client, str(ALIVE)), f"/session/{ALIVE}")
    assert_redirect(search(client, "00000000-0000-0000-0000-0000000000D"), f"/session/{DEAD}")


def test_ambiguous_session_prefix_lists_both_with_liveness(client):
    page = search(client, "00000000")
    assert page.status_code == 200
    assert linked_ids(page.text) == [f"/session/{ALIVE}", f"/session/{DEAD}"]
    assert "shepherd-equinix · alive" in page.text
    assert "shepherd-lumen · expired" in page.text


# ---- provider IDs ------------------------------------------------------------------------


def test_exact_and_unique_prefix_provider_id_redirect(client):
    assert_redirect(search(client, "lumen-0002"), f"/machine/{mid(2)}")
    assert_redirect(search(client, "lum"), f"/machine/{mid(2)}")
    assert_redirect(search(client, '"eq-ccc"'), f"/machine/{mid(3)}")


def test_ambiguous_provider_prefix_lists_both(client):
    page = search(client, "eq-")
    assert page.status_code == 200
    assert linked_ids(page.text) == [f"/machine/{mid(1)}", f"/machine/{mid(3)}"]
    assert "Machines by provider ID" in page.text


def test_provider_prefix_needs_three_characters(client):
    page = search(client, "eq")
    assert page.status_code == 404
    assert "Provider ID prefixes need at least 3 characters" in page.text


@pytest.mark.parametrize("q", ["eq_", "eq-%", "%aaa", "_q-aaa", "eq\\"])
def test_like_wildcards_are_literal(client, q):
    # Unescaped, "eq_" and "_q-aaa" would match eq-aaa, "%aaa" too.
    assert_nothing_found(search(client, q), q)


def test_whole_provider_ids_match_in_any_case_prefixes_only_as_written(client):
    assert_redirect(search(client, "LUMEN-0002"), f"/machine/{mid(2)}")
    assert_redirect(search(client, "Eq-CCC"), f"/machine/{mid(3)}")
    assert_nothing_found(search(client, "LUM"), "LUM")  # a prefix is matched as written


# ---- IP addresses ------------------------------------------------------------------------


def test_ip_address_exact_match(client):
    assert_redirect(search(client, "10.0.0.2"), f"/machine/{mid(2)}")
    assert_nothing_found(search(client, "10.0.0.9"), "10.0.0.9")
    assert_nothing_found(search(client, "10.0.0"), "10.0.0")  # not a prefix search


# ---- page, bounds, escaping --------------------------------------------------------------


def test_empty_query_shows_help(client):
    for params in ({}, {"q": ""}, {"q": "   "}):
        page = client.get("/search", params=params)
        assert page.status_code == 200
        assert "Paste a machine ID" in page.text and "Nothing found" not in page.text


def test_query_length_is_bounded_to_16_kib_of_text(client):
    # Each "é" is two bytes of UTF-8 and six characters percent-encoded: the most a GET
    # carries. 16 KiB of text passes the security middleware's cap for /search.
    assert_nothing_found(search(client, "é" * 8192), "é" * 8192)
    too_long = search(client, "é" * 8192 + "a")
    assert too_long.status_code == 400 and "16385 bytes; at most 16384" in too_long.text
    assert client.get("/", params={"q": "é" * 8192}).status_code == 414  # only /search


def test_control_characters_are_a_bad_request(client):
    for q, says in (("eq\x00aaa", "NUL character"), ("eq-\x07", "control characters")):
        response = search(client, q)
        assert response.status_code == 400 and says in response.text


def test_echoed_query_is_escaped(client):
    page = search(client, "<script>alert(1)</script>")
    assert page.status_code == 404
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>alert(1)" not in page.text


def test_header_box_submits_here_and_slash_script_is_served(client):
    home = client.get("/").text
    assert re.search(r'<form class="search" method="get" action="/search"', home)
    assert 'id="search-box" type="search" name="q"' in home
    assert '<script src="/static/keys.js" defer></script>' in home
    script = client.get("/static/keys.js")
    assert script.status_code == 200
    assert 'getElementById("search-box")' in script.text and '"/"' in script.text


# ---- JSON twin ---------------------------------------------------------------------------


def test_json_twin_lists_matches_by_kind(client):
    response = search(client, "eq-", format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["q"] == "eq-" and body["redirect"] is None
    assert body["truncated"] == [] and body["limit"] == LIMIT
    assert [(m["kind"], m["id"], m["url"], m["matched"], m["exact"]) for m in body["matches"]] == [
        ("provider_id", str(mid(1)), f"/machine/{mid(1)}", "eq-aaa", False),
        ("provider_id", str(mid(3)), f"/machine/{mid(3)}", "eq-ccc", False),
    ]
    assert body["matches"][0]["label"] == "Equinix eq-aaa · IP 10.0.0.1"
    assert any("machine_provided" in q["sql"] for q in body["queries"])


def test_json_twin_never_redirects_a_unique_match(client):
    response = search(client, "10.0.0.1", format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["redirect"] == f"/machine/{mid(1)}"
    assert [(m["kind"], m["id"]) for m in body["matches"]] == [("ip", str(mid(1)))]
    accept = client.get(
        "/search",
        params={"q": "lumen-0002"},
        headers={"Accept": "application/json"},
        follow_redirects=False,
    )
    assert accept.status_code == 200 and accept.json()["redirect"] == f"/machine/{mid(2)}"


def test_json_twin_of_nothing_found_is_404(client):
    response = search(client, "nothing-like-this", format="json")
    assert response.status_code == 404
    assert response.json()["matches"] == []
    empty = client.get("/search?format=json")
    assert empty.status_code == 200 and empty.json()["matches"] == []


def test_json_shape_is_documented(client):
    spec = client.get("/openapi.json").json()
    responses = spec["paths"]["/search"]["get"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith("SearchPage")
    assert "303" in responses and "404" in responses
    fields = spec["components"]["schemas"]["Match"]["properties"]
    assert {"kind", "id", "url", "label"} <= set(fields)


# ---- our own rows: reservations, shared prefixes, exact-vs-prefix, truncation ------------

A1, A2 = UUID("abcd0000-0000-4000-8000-000000000001"), UUID("abcd1111-0000-4000-8000-000000000002")
R1, R2, R3 = (UUID(f"0e000000-0000-4000-8000-00000000000{n}") for n in (1, 2, 3))

OWN_ROWS = [
    f"""INSERT INTO machines (machine_id, machine_created_at) VALUES
        ('{A1}', now()), ('{A2}', now()), ('{R1}', now()), ('{R2}', now()), ('{R3}', now())""",
    """INSERT INTO machines (machine_id, machine_created_at)
        SELECT ('beef' || lpad(to_hex(g), 4, '0') || '-0000-4000-8000-000000000000')::uuid, now()
        FROM generate_series(1, 60) g""",
    f"""INSERT INTO machine_provided (machine_id, provider, provider_id,
            provider_reservation_id, provider_ip_address) VALUES
        ('{R1}', 'Equinix', 'dev-1', 'res-shared', '192.0.2.7'),
        ('{R2}', 'Equinix', 'dev-10', 'res-shared', '192.0.2.7'),
        ('{R3}', 'Lumen', 'dev-2', 'res-own', '2001:db8::1')""",
]


@pytest.fixture(scope="module")
def own_dsn(pg_server_dsn, migrated_template):
    with cloned_database(pg_server_dsn, migrated_template, *OWN_ROWS) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def own(own_dsn):
    with webug_client(own_dsn) as c:
        yield c


def test_two_machines_sharing_a_prefix(own):
    page = search(own, "ABCD")
    assert page.status_code == 200
    assert linked_ids(page.text) == [f"/machine/{A1}", f"/machine/{A2}"]
    assert_redirect(search(own, "abcd-1"), f"/machine/{A2}")


def test_reservation_id_unique_shared_and_not_a_prefix(own):
    assert_redirect(search(own, "res-own"), f"/machine/{R3}")
    shared = search(own, "res-shared")
    assert shared.status_code == 200
    assert linked_ids(shared.text) == [f"/machine/{R1}", f"/machine/{R2}"]
    assert "Machines by provider reservation ID" in shared.text
    assert_nothing_found(search(own, "res-sh"), "res-sh")


def test_shared_and_ipv6_addresses(own):
    shared = search(own, "192.0.2.7")
    assert shared.status_code == 200
    assert linked_ids(shared.text) == [f"/machine/{R1}", f"/machine/{R2}"]
    assert "Machines by IP address" in shared.text
    assert_redirect(search(own, "2001:db8::1"), f"/machine/{R3}")


def test_exact_provider_id_wins_over_longer_ids_with_that_prefix(own):
    assert_redirect(search(own, "dev-1"), f"/machine/{R1}")
    body = search(own, "dev-1", format="json").json()
    assert [(m["matched"], m["exact"]) for m in body["matches"]] == [
        ("dev-1", True),
        ("dev-10", False),
    ]
    listed = search(own, "dev-")
    assert linked_ids(listed.text) == [f"/machine/{R1}", f"/machine/{R2}", f"/machine/{R3}"]


def test_more_than_the_limit_is_truncated_and_said(own):
    page = search(own, "beef")
    assert page.status_code == 200
    assert len(linked_ids(page.text)) == LIMIT
    assert f"Only the first {LIMIT} are listed" in page.text
    assert 'href="/?q=beef"' in page.text
    body = search(own, "beef", format="json").json()
    assert body["truncated"] == ["machine"] and len(body["matches"]) == LIMIT


def test_bmdb_without_reservation_and_ip_columns(migrated_db_dsn):
    run_sync(
        execute(
            migrated_db_dsn,
            f"INSERT INTO machines VALUES ('{A1}', now())",
            f"INSERT INTO machine_provided (machine_id, provider, provider_id, "
            f"provider_ip_address) VALUES ('{A1}', 'Equinix', 'old-1', '10.9.9.9')",
            "ALTER TABLE machine_provided DROP COLUMN provider_reservation_id,"
            " DROP COLUMN provider_ip_address",
        )
    )
    with webug_client(migrated_db_dsn) as c:
        assert_redirect(search(c, "old-1"), f"/machine/{A1}")
        missing = search(c, "10.9.9.9")
        assert missing.status_code == 404
        assert "no provider_ip_address column" in missing.text


def test_bmdb_without_machine_provided(migrated_db_dsn):
    run_sync(
        execute(
            migrated_db_dsn,
            f"INSERT INTO machines VALUES ('{A1}', now())",
            "DROP TABLE machine_provided",
        )
    )
    with webug_client(migrated_db_dsn) as c:
        assert_redirect(search(c, "abcd"), f"/machine/{A1}")
        page = search(c, "eq-aaa")
        assert page.status_code == 404 and "no machine_provided table" in page.text


# ---- /machine/<prefix> ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "q",
    [
        "00000001 00000002, 0000000B",  # prefixes, space- and comma-separated, any case
        f"0000000c;{mid(2)}\n00000001",  # one of them unknown, one a full ID
    ],
)
def test_several_ids_or_prefixes_lead_to_the_watch_list_of_exactly_those(client, q):
    response = client.get("/search", params={"q": q}, follow_redirects=False)
    assert response.status_code == 303
    tokens = parse_tokens([q])
    assert response.headers["location"] == "/watch?ids=" + ",".join(tokens)
    watch = client.get(response.headers["location"]).text
    assert re.findall(r'data-watch-machine="([0-9a-f-]{36})"', watch) == [
        str(mid(int(t[:8], 16))) for t in tokens if int(t[:8], 16) <= MACHINES
    ]
    body = client.get("/search", params={"q": q, "format": "json"})
    assert body.status_code == 200  # JSON never redirects: it says where
    assert body.json()["watch_ids"] == tokens
    assert body.json()["watch_url"] == response.headers["location"]


def test_a_list_of_full_ids_naming_a_session_is_listed_not_watched(client):
    response = client.get("/search", params={"q": f"{mid(1)} {ALIVE}"}, follow_redirects=False)
    assert response.status_code == 200 and "Sessions by ID" in response.text
    two = client.get("/search", params={"q": f"{mid(1)} {mid(3)}"}, follow_redirects=False)
    assert two.headers["location"] == f"/watch?ids={mid(1)},{mid(3)}"


def test_machine_id_prefix_resolves_by_a_primary_key_range(client):
    for prefix, machine in (("00000003", 3), ("0000000C-", 12), ("0000000c", 12)):
        assert_redirect(client.get(f"/machine/{prefix}", **NO_REDIRECT), f"/machine/{mid(machine)}")
    several = client.get("/machine/0000")
    assert several.status_code == 200
    assert linked_ids(several.text) == [f"/machine/{mid(n)}" for n in range(1, 13)]
    assert "Sessions by ID" not in several.text  # only machines for /machine/<prefix>
    assert_nothing_found(client.get("/machine/ffff"), "ffff")
    for bad in ("000", "eq-aaa", "0000%25", "g000", "nothex"):
        response = client.get(f"/machine/{bad}")
        assert response.status_code == 400, bad
        assert "is neither a machine ID nor a machine ID prefix" in response.text
    body = client.get("/machine/0000?format=json").json()
    assert len(body["matches"]) == 12 and body["redirect"] is None
    assert {m["kind"] for m in body["matches"]} == {"machine"}
    assert all("BETWEEN" in q["sql"] and "LIKE" not in q["sql"] for q in body["queries"])
