"""Watch lists (/watch?ids=...) and /watch/filtered, on a real PostgreSQL."""

from __future__ import annotations

import json
import re
from uuid import UUID

import pytest

from app.bmdb.watch import CANDIDATES, MAX_IDS
from tests.fleet import MACHINES, load_small_fleet, mid
from tests.support import execute, run_sync, webug_client

HTMX = {"HX-Request": "true"}
A1, A2 = UUID("abcd0000-0000-4000-8000-000000000001"), UUID("abcd1111-0000-4000-8000-000000000002")
NOBODY = UUID("f0000000-0000-4000-8000-00000000000f")


@pytest.fixture(scope="module")
def client(small_fleet_dsn):
    with webug_client(small_fleet_dsn) as c:
        yield c


def watch_json(client, ids: str) -> dict:
    response = client.get("/watch", params={"ids": ids, "format": "json"})
    assert response.status_code == 200, response.text[:500]
    return response.json()


def states(body: dict) -> list[tuple[str, str]]:
    return [(t["token"], t["state"]) for t in body["tokens"]]


def watched(body_or_html: dict | str) -> list[str]:
    """The watched machines, in the order shown."""
    if isinstance(body_or_html, dict):
        return [m["machine_id"] for m in body_or_html["machines"]]
    return re.findall(r'data-watch-machine="([0-9a-f-]{36})"', body_or_html)


# ---- resolving IDs and prefixes ----------------------------------------------------------


def test_full_ids_and_unique_prefixes_in_any_case_and_spelling(client):
    ids = f"0000000B, {str(mid(2)).upper()};{str(mid(3)).replace('-', '')} `00000004`"
    body = watch_json(client, ids)
    assert states(body) == [
        ("0000000b", "machine"),
        (str(mid(2)), "machine"),  # full IDs in their usual spelling
        (str(mid(3)), "machine"),
        ("00000004", "machine"),
    ]
    assert watched(body) == [str(mid(n)) for n in (11, 2, 3, 4)]  # in the order given
    assert body["machines"][0]["named_by"] == ["0000000b"]
    assert body["full_ids_url"] == "/watch?ids=" + ",".join(str(mid(n)) for n in (11, 2, 3, 4))
    assert body["tokens"][0]["url"] == f"/machine/{mid(11)}"


def test_ambiguous_prefix_lists_candidates_and_links_all_of_them(client):
    body = watch_json(client, "0000,00000001")
    ambiguous = body["tokens"][0]
    assert ambiguous["state"] == "ambiguous" and ambiguous["more"] is True
    assert ambiguous["candidates"] == [str(mid(n)) for n in range(1, CANDIDATES + 1)]
    assert ambiguous["url"] == "/machine/0000"  # the page that lists every one
    assert watched(body) == [str(mid(1))]  # only what a token names alone is watched
    html = client.get("/watch?ids=0000,00000001").text
    assert '<span class="badge warn">ambiguous</span>' in html
    assert f'<a class="mono" href="/machine/{mid(5)}">' in html
    assert '<a href="/machine/0000">list them all</a>' in html


def test_unknown_and_invalid_tokens_are_listed_as_such(client):
    body = watch_json(client, f"ffff,{NOBODY},xyz,000,00000001")
    assert states(body) == [
        ("ffff", "unknown"),
        (str(NOBODY), "unknown"),
        ("xyz", "invalid"),
        ("000", "invalid"),  # too short to be a prefix
        ("00000001", "machine"),
    ]
    html = client.get("/watch", params={"ids": f"ffff,{NOBODY},xyz"}).text
    assert "no machine ID starts with this" in html
    assert f'<a href="/machine/{NOBODY}">deleted? its history</a>' in html
    assert "None of these name a machine." in html
    assert "not an ID" in html


def test_what_the_ids_said_is_escaped(client):
    html = client.get("/watch", params={"ids": '<script>alert(1)</script>,"><img src=x>'}).text
    assert "<script>alert(1)" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_one_hundred_ids_at_most(client):
    hundred = [str(mid(n)) for n in range(1, MACHINES + 1)]
    hundred += [str(UUID(int=0xF << 124 | n)) for n in range(MAX_IDS - MACHINES)]
    assert len(hundred) == MAX_IDS
    body = watch_json(client, ",".join(hundred))
    assert len(body["tokens"]) == MAX_IDS and len(body["machines"]) == MACHINES
    assert body["max_ids"] == MAX_IDS
    # A repeated ID counts once; one more is refused, with the reason.
    repeated = client.get("/watch", params={"ids": ",".join([*hundred, hundred[0].upper()])})
    assert repeated.status_code == 200
    too_many = client.get("/watch", params={"ids": ",".join([*hundred, "abcdef01"])})
    assert too_many.status_code == 400
    assert "at most 100 machines; 101 IDs were given" in too_many.text


def test_no_ids_is_a_form_and_no_statement(client):
    page = client.get("/watch")
    assert page.status_code == 200
    assert 'name="ids"' in page.text and "up to 100" in page.text
    assert client.get("/watch?format=json").json()["queries"] == []


# ---- what a watched machine shows ---------------------------------------------------------


def test_rows_carry_work_backoffs_and_heartbeat_for_notifications(client):
    html = client.get(f"/watch?ids={mid(1)},{mid(2)},{mid(3)}").text
    rows = dict(re.findall(r'data-watch-machine="([0-9a-f-]{36})"([^>]*)>', html))
    assert 'data-work="ShepherdAccess" data-backoffs="" data-heartbeat="none"' in rows[str(mid(1))]
    # mid(2): stale work, an active backoff; mid(3): only an expired backoff.
    assert 'data-work="ShepherdAgentStart" data-backoffs="ShepherdAccess"' in rows[str(mid(2))]
    assert 'data-work="" data-backoffs=""' in rows[str(mid(3))]
    assert "ShepherdAgentStart · stale" in html and "1 expired" in html
    assert "lumen-0002" in html  # which machine is which
    assert 'data-state="blocked">blocked</span> AgentStart' in html  # mid(2)'s stale work


def test_rows_carry_the_facts_the_change_log_compares(migrated_db_dsn):
    """Backoff ends, workflow states, and the newest history event per process: how work
    that ended went (watch.js logs "work ended (ShepherdAccess: Failed: ...)")."""
    load_small_fleet(migrated_db_dsn)
    run_sync(execute(migrated_db_dsn, f"""INSERT INTO work_history VALUES
        ('{mid(2)}', 'ShepherdAccess', 'Started', now() - interval '5 minutes', NULL),
        ('{mid(2)}', 'ShepherdAccess', 'Failed', now() - interval '1 minute',
         '{"x" * 400}<script>')"""))  # fmt: skip
    with webug_client(migrated_db_dsn) as c:
        html = c.get(f"/watch?ids={mid(2)},{mid(3)}").text
        body = watch_json(c, f"{mid(2)}")
    row_facts = r'data-watch-machine="([0-9a-f-]{36})"[^>]*data-facts=\'([^\']*)\''
    facts = dict(re.findall(row_facts, html))
    two = json.loads(facts[str(mid(2))])
    assert list(two["backoffs"]) == ["ShepherdAccess"]  # active, with its end
    assert two["workflows"] == {"AgentStart": "blocked", "AgentRecovery": "not_needed",
                                "OSInstallation": "not_needed"}  # fmt: skip
    event, at, cause = two["last"]["ShepherdAccess"]
    assert event == "Failed" and cause == "x" * 300  # the start of a long cause
    assert two["last"]["ShepherdAgentStart"][0] == "Started"
    assert json.loads(facts[str(mid(3))])["backoffs"] == {}  # expired: not active
    assert "<script>" not in html
    last = {e["process"]: e for e in body["machines"][0]["last_events"]}
    assert last["ShepherdAccess"]["event"] == "Failed" and last["ShepherdAccess"]["timestamp"]


def test_json_twin_of_the_machines(client):
    body = watch_json(client, f"{mid(2)},{mid(1)}")
    second, first = body["machines"]
    assert second["work"][0]["stale"] is True
    assert [(b["process"], b["active"]) for b in second["backoffs"]] == [("ShepherdAccess", True)]
    assert second["tags"]["Provided"]["provider_id"] == "lumen-0002"
    assert first["tags"]["AgentStarted"]["agent_public_key"]["hex"] == "0102"  # every field
    assert (first["heartbeat"], first["last_heartbeat"]) == ("none", None)
    # Why it is stuck, as on the machine's page: mid(2)'s expired session still holds work.
    agent_start = next(w for w in second["workflows"] if w["workflow"] == "AgentStart")
    assert agent_start["state"] == "blocked"
    assert "stale_work" in [b["kind"] for b in agent_start["blockers"]]
    assert body["capped"] is False and body["full_ids_url"] is None
    assert len(body["queries"]) == 1
    spec = client.get("/openapi.json").json()
    ok = spec["paths"]["/watch"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("WatchPage")


# ---- live ---------------------------------------------------------------------------------

HEARTBEATS = [
    f"INSERT INTO machines VALUES ('{A1}', now()), ('{A2}', now()), ('{NOBODY}', now())",
    f"INSERT INTO machine_agent_heartbeat VALUES ('{A1}', now() - interval '1 minute'),"
    f" ('{A2}', now() - interval '11 minutes')",
]


@pytest.fixture
def own(migrated_db_dsn):
    run_sync(execute(migrated_db_dsn, *HEARTBEATS))
    with webug_client(migrated_db_dsn) as c:
        yield migrated_db_dsn, c


def test_heartbeat_states(own):
    _, c = own
    body = watch_json(c, f"{A1},{A2},{NOBODY}")
    assert [m["heartbeat"] for m in body["machines"]] == ["recent", "stale", "none"]
    assert body["machines"][0]["last_heartbeat"] is not None


def test_without_a_heartbeat_table_the_state_is_unknown(own):
    dsn, c = own
    run_sync(execute(dsn, "DROP TABLE machine_agent_heartbeat"))
    c.post("/schema/refresh")
    body = watch_json(c, f"{A1}")
    assert body["machines"][0]["heartbeat"] == "unknown"
    assert "no heartbeat tag in this BMDB" in c.get(f"/watch?ids={A1}").text


def test_a_poll_is_304_until_something_changes_then_shows_it(own):
    dsn, c = own
    url = f"/watch?ids={A1},abcd1,{NOBODY}&every=2"
    first = c.get(url, headers=HTMX)
    assert first.status_code == 200 and first.text.startswith('<div id="watch-live"')
    ptag = first.headers["HX-PTag"]
    again = c.get(url, headers={**HTMX, "HX-PTag": ptag})
    assert again.status_code == 304 and again.content == b""
    run_sync(execute(dsn, f"""INSERT INTO work_backoff VALUES
        ('{A1}', 'ShepherdRecovery', now() + interval '1 hour', 'ipmi timeout', 60)"""))
    changed = c.get(url, headers={**HTMX, "HX-PTag": ptag})
    assert changed.status_code == 200 and changed.headers["HX-PTag"] != ptag
    assert 'data-backoffs="ShepherdRecovery"' in changed.text
    # Deleted: the ID names no machine any more, which watch.js turns into a notification.
    run_sync(execute(dsn, f"DELETE FROM work_backoff WHERE machine_id = '{NOBODY}'",
                     f"DELETE FROM machines WHERE machine_id = '{NOBODY}'"))  # fmt: skip
    gone = c.get(url, headers={**HTMX, "HX-PTag": changed.headers["HX-PTag"]})
    assert gone.status_code == 200
    assert f'data-watch-token="{NOBODY}" data-state="unknown"' in gone.text
    assert watched(gone.text) == [str(A1), str(A2)]


def test_a_backoff_that_ends_changes_the_document(own):
    """`active` is computed by the BMDB at each poll: the md5 changes when it flips."""
    dsn, c = own
    run_sync(execute(dsn, f"""INSERT INTO work_backoff VALUES
        ('{A1}', 'ShepherdAccess', now() + interval '1 second', 'flaky', 1)"""))
    url = f"/watch?ids={A1}"
    first = c.get(url, headers=HTMX)
    assert 'data-backoffs="ShepherdAccess"' in first.text
    run_sync(execute(dsn, "SELECT pg_sleep(1.2)"))
    after = c.get(url, headers={**HTMX, "HX-PTag": first.headers["HX-PTag"]})
    assert after.status_code == 200 and 'data-backoffs=""' in after.text


# ---- the machine list's button ------------------------------------------------------------


def test_machine_list_links_its_filter_as_a_watch_list(client):
    html = client.get("/?provider=Equinix").text
    assert 'id="watch-these" href="/watch/filtered?provider=Equinix"' in html
    redirect = client.get("/watch/filtered?provider=Equinix", follow_redirects=False)
    assert redirect.status_code == 303
    assert redirect.headers["location"] == f"/watch?ids={mid(1)},{mid(3)}"
    # In the list's order: machine n was created n days ago.
    newest = client.get("/?sort=-created&provider=Equinix").text
    assert 'href="/watch/filtered?provider=Equinix&amp;sort=-created"' in newest
    oldest = client.get("/watch/filtered?provider=Equinix&sort=created", follow_redirects=False)
    assert oldest.headers["location"] == f"/watch?ids={mid(3)},{mid(1)}"
    nobody = client.get("/watch/filtered?provider=Lumen&status=Running")
    assert nobody.status_code == 404
    assert "No machine matches this filter: there is nothing to watch." in nobody.text
    assert client.get("/watch/filtered?provider=Nobody").status_code == 400  # no such label
    bad = client.get("/watch/filtered?has=NoSuchTag")
    assert bad.status_code == 400 and "NoSuchTag" in bad.text


def test_a_filter_of_more_than_100_machines_watches_the_first_100(migrated_db_dsn):
    from tests.fleet import machines_sql

    run_sync(execute(migrated_db_dsn, machines_sql(1, MAX_IDS + 5)))
    with webug_client(migrated_db_dsn) as c:
        redirect = c.get("/watch/filtered", follow_redirects=False)
        location = redirect.headers["location"]
        assert location.endswith("&capped=1")
        ids = location.removeprefix("/watch?ids=").removesuffix("&capped=1").split(",")
        assert ids == [str(mid(n)) for n in range(1, MAX_IDS + 1)]
        page = c.get(location)
        assert len(watched(page.text)) == MAX_IDS
        assert "The filter matched more than 100 machines" in page.text
