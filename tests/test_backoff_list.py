"""/backoffs on a real PostgreSQL: exactly the active, expired or all backoffs, in each
order across keyset pages (NULL intervals last both ways), the cause's text search with
literal wildcards, failure groups that exist on /failures, the CSV equal to the pages."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterator

import pytest

from tests.fleet import machines_sql, mid
from tests.support import csv_rows, fleet_client, keyset_pages

# (machine, process, minutes until it ends (inf: 'infinity'), last interval, cause)
BACKOFFS = [
    (1, "ShepherdAccess", 10, 600, "ssh: connection refused to 10.0.0.1:22"),
    (2, "ShepherdAccess", 60, 3600, "ssh: connection refused to 10.0.0.2:22"),
    (2, "ShepherdRecovery", 5, None, "agent unreachable <script>x</script>"),
    (3, "ShepherdAgentStart", -30, 120, "timeout after 30s"),
    (4, "ShepherdAccess", -180, None, "Old failure"),
    (5, "ShepherdRecovery", math.inf, 86400, "manual hold"),
    (6, "ShepherdAccess", -5, 7200, "disk full\nsecond line"),
]


def _until(minutes: float) -> str:
    return "'infinity'" if minutes == math.inf else f"now() + interval '{minutes} minutes'"


FLEET = [
    machines_sql(1, 6),
    "INSERT INTO work_backoff (machine_id, process, until, cause, last_interval_seconds) VALUES "
    + ", ".join(
        f"('{mid(m)}', '{p}', {_until(u)}, $${c}$$, {'NULL' if i is None else i})"
        for m, p, u, i, c in BACKOFFS
    ),
]


def key(row: tuple) -> tuple[str, str]:
    return str(mid(row[0])), row[1]


ACTIVE = [b for b in BACKOFFS if b[2] > 0]
EXPIRED = [b for b in BACKOFFS if b[2] <= 0]


def ordered(rows: list[tuple], sort: str) -> list[tuple[str, str]]:
    """The order `sort` names, computed here: NULL intervals last in both directions."""
    name, descending = sort.removeprefix("-"), sort.startswith("-")
    if name == "machine_id":
        return sorted(map(key, rows), reverse=descending)
    column = 2 if name == "until" else 3
    keyed = sorted((r for r in rows if r[column] is not None),
                   key=lambda r: (r[column], key(r)), reverse=descending)  # fmt: skip
    unkeyed = sorted((r for r in rows if r[column] is None), key=key, reverse=descending)
    return [key(r) for r in keyed + unkeyed]


@pytest.fixture(scope="module")
def client(pg_server_dsn, migrated_template) -> Iterator:
    with fleet_client(pg_server_dsn, migrated_template, *FLEET) as c:
        yield c


def keys(items: list[dict]) -> list[tuple[str, str]]:
    return [(b["machine_id"], b["process"]) for b in items]


SORTS = ["until", "-until", "-interval", "interval", "machine_id", "-machine_id"]


@pytest.mark.parametrize("state", ["active", "expired", "all"])
@pytest.mark.parametrize("sort", [None, *SORTS])
@pytest.mark.parametrize("limit", [1, 3])
def test_backoffs_lists_exactly_the_state_in_each_order_across_keyset_pages(
    client, state, sort, limit
):
    rows = {"active": ACTIVE, "expired": EXPIRED, "all": BACKOFFS}[state]
    default = "-until" if state == "expired" else "until"
    query = f"/backoffs?state={state}" + (f"&sort={sort}" if sort else "")
    items = keyset_pages(client, query, "items", limit)
    assert keys(items) == ordered(rows, sort or default)
    assert all(b["active"] is (state == "active") for b in items) or state == "all"


def test_active_is_the_default_and_each_backoff_says_when_it_ends(client):
    page = client.get("/backoffs?format=json").json()
    assert page["filters"] == {"state": "active"} and page["sort"] == "until"
    assert keys(page["items"]) == ordered(ACTIVE, "until")
    by_key = {(b["machine_id"], b["process"]): b for b in page["items"]}
    for row in ACTIVE:
        b = by_key[key(row)]
        assert b["cause"] == row[4] and b["last_interval_seconds"] == row[3]
        if row[2] == math.inf:
            assert b["until"] == "infinity" and b["ends_in_seconds"] is None
        else:
            assert abs(b["ends_in_seconds"] - 60 * row[2]) < 30
    assert page["states"] == {"active": 4, "expired": 3, "all": 7}
    assert page["processes"] == {"ShepherdAccess": 2, "ShepherdRecovery": 2}


def test_text_searches_the_cause_in_any_case_with_literal_wildcards(client):
    found = keyset_pages(client, "/backoffs?state=all&text=CONNECTION%20refused", "items", 10)
    assert sorted(keys(found)) == sorted(key(b) for b in BACKOFFS[:2])
    assert keyset_pages(client, "/backoffs?state=all&text=%25", "items", 10) == []
    assert keyset_pages(client, "/backoffs?state=all&text=_", "items", 10) == []
    page = client.get("/backoffs?state=all&text=refused&format=json").json()
    assert page["states"] == {"active": 2, "expired": 0, "all": 2}


def test_causes_of_one_signature_share_a_failure_group_that_failures_lists(client):
    found = keyset_pages(client, "/backoffs", "items", 10)
    items = {(b["machine_id"], b["process"]): b for b in found}
    first, second = items[key(BACKOFFS[0])], items[key(BACKOFFS[1])]
    assert first["failure_group"] == second["failure_group"]
    assert first["failure_group"] == f"backoff-{first['failure_digest']}"
    failures = client.get("/failures").text
    for b in items.values():
        assert b["failure_url"] == f"/failures#g-{b['failure_group']}"
        assert f'id="g-{b["failure_group"]}"' in failures, b


def test_the_page_shows_each_backoff_its_countdown_and_its_whole_cause(client):
    page = client.get("/backoffs?state=all").text
    rows = re.findall(r'<tr id="b-([0-9a-f-]{36})-(\w+)"[^>]*class="(active|expired)"', page)
    assert [(m, p) for m, p, _ in rows] == ordered(BACKOFFS, "until")
    assert "agent unreachable &lt;script&gt;x&lt;/script&gt;" in page
    assert "<script>x</script>" not in page
    assert "disk full\nsecond line" in page  # wrapped, in full
    assert page.count("ended <time") == 3 and page.count("ends <time") == 3
    assert "ends <span class=\"special\" title=\"infinity (as stored)\">never</span>" in page
    assert 'href="/backoffs?state=all&amp;sort=-interval"' in page  # longest interval first


def test_the_csv_equals_the_pages(client):
    for query in ("", "state=all&sort=-interval", "state=expired&text=e"):
        items = keyset_pages(client, "/backoffs?" + query, "items", 2)
        rows = csv_rows(client, "/backoffs?format=csv&" + query)
        assert [(r["machine_id"], r["process"]) for r in rows] == keys(items)
        for r, b in zip(rows, items, strict=True):
            assert r["cause"] == b["cause"] and r["failure_group"] == b["failure_group"]
            assert r["until"] == b["until"].replace("+00:00", "Z")
            assert r["last_interval_seconds"] == str(b["last_interval_seconds"] or "")


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("process=Nope", "ShepherdAccess, ShepherdAgentStart, ShepherdRecovery"),
        ("state=gone", "'active', 'expired' or 'all'"),
        ("sort=soon", "'until', '-until', '-interval', 'interval', 'machine_id' or '-machine_id'"),
        ("after=x", "is not a page of sort=until"),
    ],
)
def test_bad_input_is_a_400_that_lists_what_is_valid(client, query, says):
    response = client.get("/backoffs?" + query)
    assert response.status_code == 400
    assert says in html.unescape(response.text)
