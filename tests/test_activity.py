"""Activity over time on the overview, on a real PostgreSQL: buckets of known rows, and
the cost rules of fleet-wide history reads (shared, never read by a poll), counted on the
wire."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.fleet import machines_sql, mid
from tests.support import cloned_database, proxied_webug, sent, webug_client

HTMX = {"HX-Request": "true"}
NOW = datetime.now(UTC)
HOUR = NOW.replace(minute=0, second=0, microsecond=0)  # the current hour's start

# (minutes after HOUR, process, event): in the current hour, earlier hours of the last 24,
# earlier days of the last 7 (within today's UTC day or not), and older than 7 days.
ROWS = [
    (-60 * 2 + 10, "ShepherdAccess", "Started"),
    (-60 * 2 + 40, "ShepherdAccess", "Failed"),
    (-60 * 2 + 50, "ShepherdAccess", "Started"),
    (-60 * 2 + 55, "ShepherdAgentStart", "Started"),
    (-60 * 5 + 1, "ShepherdAccess", "Finished"),
    (-60 * 20, "ShepherdRecovery", "Canceled"),
    (-60 * 24 * 3, "ShepherdRecovery", "Failed"),
    (-60 * 24 * 3 + 30, "ShepherdRecovery", "Failed"),
    (-60 * 24 * 5, "ShepherdAccess", "Started"),
    (-60 * 24 * 9, "ShepherdAccess", "Started"),  # too old for either series
]


def at(minutes: int) -> datetime:
    return HOUR + timedelta(minutes=minutes)


@pytest.fixture(scope="module")
def activity_dsn(pg_server_dsn, migrated_template):
    values = ", ".join(
        f"('{mid(1)}', '{process}', '{event}', '{at(minutes).isoformat()}', NULL)"
        for minutes, process, event in ROWS
    )
    rows = f"INSERT INTO work_history VALUES {values}"
    with cloned_database(pg_server_dsn, migrated_template, machines_sql(1, 2), rows) as dsn:
        yield dsn


def test_activity_buckets_count_known_rows(activity_dsn):
    with webug_client(activity_dsn) as client:
        data = client.get("/overview?format=json").json()
    hourly = {(b["hour"], b["process"], b["event"]): b["n"] for b in data["activity"]}
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    assert hourly == {
        (iso(HOUR - timedelta(hours=2)), "ShepherdAccess", "Started"): 2,
        (iso(HOUR - timedelta(hours=2)), "ShepherdAccess", "Failed"): 1,
        (iso(HOUR - timedelta(hours=2)), "ShepherdAgentStart", "Started"): 1,
        (iso(HOUR - timedelta(hours=5)), "ShepherdAccess", "Finished"): 1,
        (iso(HOUR - timedelta(hours=20)), "ShepherdRecovery", "Canceled"): 1,
    }
    daily = {(b["day"], b["process"], b["event"]): b["n"] for b in data["activity_daily"]}
    expected: Counter = Counter()
    first_day = HOUR.date() - timedelta(days=6)
    for minutes, process, event in ROWS:
        day = at(minutes).date()
        if day >= first_day:
            expected[(day.isoformat(), process, event)] += 1
    assert daily == dict(expected)
    assert daily[((HOUR - timedelta(days=3)).date().isoformat(), "ShepherdRecovery", "Failed")] == 2
    assert date.fromisoformat(min(d for d, _, _ in daily)) >= first_day
    assert data["activity_error"] is None and data["activity_computed_at"]


def test_the_chart_draws_each_process_and_says_how_old_it_is(activity_dsn):
    with webug_client(activity_dsn) as client:
        fragment = client.get("/activity", headers=HTMX)
        page = client.get("/activity")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert page.status_code == 200 and "<html" in page.text
    svg = fragment.text
    for process in ("ShepherdAccess", "ShepherdAgentStart", "ShepherdRecovery"):
        assert 'class="lane" x="0"' in svg and f">{process}</text>" in svg
    # the hour 2 h ago, its day, and the day 3 days ago
    assert svg.count('class="bar failed"') == 3
    assert "ShepherdAccess" in svg and "2 Started, 1 Failed" in svg  # a bar's title
    assert 'id="activity-age"' in svg and "read again at most every 60 s" in svg
    assert 'style="' not in svg  # the CSP allows no inline style


def test_empty_history_draws_no_chart(migrated_db_dsn):
    with webug_client(migrated_db_dsn) as client:
        fragment = client.get("/activity", headers=HTMX)
        data = client.get("/overview?format=json").json()
    assert 'id="activity-empty"' in fragment.text and "<svg" not in fragment.text
    assert data["activity"] == [] and data["activity_daily"] == []


@pytest.fixture(scope="module")
def proxied(activity_dsn):
    with proxied_webug(activity_dsn) as proxy_and_client:
        yield proxy_and_client


def test_overview_polls_never_read_history(proxied):
    proxy, client = proxied
    reads = client.app.state.history_reads
    page = client.get("/overview")
    assert 'hx-get="/activity" hx-trigger="load"' in page.text  # a fragment loaded once
    assert reads.reads == 0  # the page itself reads no history
    client.get("/failures?since=1h")  # opens the history connection (its session settings)
    statements, _, chart = sent(proxy, lambda: client.get("/activity", headers=HTMX))
    assert chart.status_code == 200 and statements == 1 and reads.reads == 2
    for _ in range(3):
        statements, _, poll = sent(proxy, lambda: client.get("/overview", headers=HTMX))
        assert poll.status_code == 200 and 'id="activity"' not in poll.text
        assert statements == 0  # counts shared too
    client.app.state.count_cache.clear()  # the counts are due: a poll recounts them...
    statements, _, _ = sent(proxy, lambda: client.get("/overview", headers=HTMX))
    assert statements == 1 and reads.reads == 2  # ...and still reads no history
    # Other tabs, the JSON twin and the failures page share the same reads.
    statements, _, _ = sent(proxy, lambda: client.get("/activity", headers=HTMX))
    assert statements == 0
    statements, _, twin = sent(proxy, lambda: client.get("/overview?format=json"))
    assert statements == 0 and twin.json()["activity"]
    client.app.state.count_cache.clear()
    statements, _, _ = sent(proxy, lambda: client.get("/failures"))
    assert statements == 2  # backoff groups (count interval) and history groups, once
    statements, _, _ = sent(proxy, lambda: client.get("/failures"))
    assert statements == 0 and reads.reads == 3
