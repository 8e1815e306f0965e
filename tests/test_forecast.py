"""/forecast on a real PostgreSQL: backoff ends and recoveries due at the exact instants the
BMDB determines, only for machines nothing else keeps out of the workflow; the horizon;
one statement, shared like the counts."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from app.bmdb.tables import AGENT_STARTED
from tests.fleet import ALIVE, machines_sql, mid
from tests.support import execute, proxied_webug, run_sync, sent, webug_client
from tests.test_fleet_stats import query

STARTED = "INSERT INTO machine_agent_started VALUES ('{m}', now() - interval '{ago}', '\\x01')"
BEAT = "INSERT INTO machine_agent_heartbeat VALUES ('{m}', now() - interval '{ago}')"
PROVIDED = "INSERT INTO machine_provided (machine_id, provider, provider_id) VALUES ('{m}', 'Equinix', '{m}')"  # noqa: E501
BACKOFF = "INSERT INTO work_backoff VALUES ('{m}', '{p}', now() + interval '{at}', 'cause', 60)"
REQUEST = "INSERT INTO machine_os_installation_request VALUES ('{m}', 1, '\\x08')"
REPORT = "INSERT INTO machine_os_installation_report VALUES ('{m}', 1, '{result}', '\\x08')"


def silent_agent(n: int, beat: str | None = "4 minutes") -> list[str]:
    """Machine n: provided, its agent started an hour ago, last heartbeat `beat` ago."""
    rows = [PROVIDED.format(m=mid(n)), STARTED.format(m=mid(n), ago="1 hour")]
    return rows + ([BEAT.format(m=mid(n), ago=beat)] if beat else [])


FLEET = [
    machines_sql(1, 12),
    f"INSERT INTO sessions VALUES ('{ALIVE}', 'shepherd', 'pid 1', now(), 60,"
    " now() + interval '1 hour')",
    # 1: never heartbeated, started 10 minutes ago: due 30 minutes after it started.
    PROVIDED.format(m=mid(1)), STARTED.format(m=mid(1), ago="10 minutes"),
    # 2: a late heartbeat, 4 minutes old: due when it is 10 minutes old.
    *silent_agent(2),
    # 3: a heartbeat a minute old is not late: its next one moves the moment.
    *silent_agent(3, beat="1 minute"),
    # 4: shepherd work keeps it out of the workflow.
    *silent_agent(4), f"INSERT INTO work VALUES ('{mid(4)}', '{ALIVE}', 'ShepherdAccess')",
    # 5: a recovery backoff still active when the heartbeat is 10 minutes old.
    *silent_agent(5), BACKOFF.format(m=mid(5), p="ShepherdRecovery", at="30 minutes"),
    # 6: a recovery backoff that ends before: due all the same.
    *silent_agent(6), BACKOFF.format(m=mid(6), p="ShepherdRecovery", at="2 minutes"),
    # 7: its installation is fulfilled (a Success report): left alone.
    *silent_agent(7), REQUEST.format(m=mid(7)), REPORT.format(m=mid(7), result="Success"),
    # 8: not provided.
    STARTED.format(m=mid(8), ago="1 hour"), BEAT.format(m=mid(8), ago="4 minutes"),
    # 9: never heartbeated, started 40 minutes ago: due already, nothing to forecast.
    PROVIDED.format(m=mid(9)), STARTED.format(m=mid(9), ago="40 minutes"),
    # 10: a backoff that ends in two hours; 11: one that ended.
    BACKOFF.format(m=mid(10), p="ShepherdAccess", at="2 hours"),
    BACKOFF.format(m=mid(11), p="ShepherdAgentStart", at="-1 hour"),
    # 12: an Error report does not fulfil the installation for the recoverer.
    *silent_agent(12), REQUEST.format(m=mid(12)), REPORT.format(m=mid(12), result="Error"),
]  # fmt: skip

# Upstream's AgentRecovery selection (docs/workflows.md, "The upstream rules") at the instant $1.
RECOVERY_SELECTION = """
SELECT p.machine_id FROM machine_provided p
JOIN machine_agent_started a ON a.machine_id = p.machine_id
LEFT JOIN machine_agent_heartbeat h ON h.machine_id = p.machine_id
WHERE NOT EXISTS (SELECT 1 FROM machine_os_installation_request r
                  JOIN machine_os_installation_report rep USING (machine_id)
                  WHERE r.machine_id = p.machine_id AND rep.os_installation_result = 'Success'
                    AND r.generation IS NOT DISTINCT FROM rep.generation)
  AND ((h.machine_id IS NULL AND a.agent_started_at < $1::timestamptz - interval '30 minutes')
       OR h.agent_heartbeat_at < $1::timestamptz - interval '10 minutes')
  AND NOT EXISTS (SELECT 1 FROM work w WHERE w.machine_id = p.machine_id
                  AND w.process IN ('ShepherdAccess', 'ShepherdAgentStart', 'ShepherdRecovery'))
  AND NOT EXISTS (SELECT 1 FROM work_backoff b WHERE b.machine_id = p.machine_id
                  AND b.process = 'ShepherdRecovery' AND b.until > $1::timestamptz)"""
US = timedelta(microseconds=1)


@pytest.fixture
def fleet_dsn(migrated_db_dsn: str) -> str:
    run_sync(execute(migrated_db_dsn, *FLEET))
    return migrated_db_dsn


def upcoming(client, query_string: str = "") -> list[dict]:
    response = client.get(f"/forecast?format=json{query_string}")
    assert response.status_code == 200, response.text
    return response.json()["upcoming"]


def _at(entry: dict) -> datetime:
    return datetime.fromisoformat(entry["at"])


async def _selected_at(dsn: str, instant: datetime) -> set:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return {r[0] for r in await conn.fetch(RECOVERY_SELECTION, instant)}
    finally:
        await conn.close()


def test_entries_fall_at_the_exact_instants(fleet_dsn):
    with webug_client(fleet_dsn) as client:
        entries = upcoming(client)
    started = dict(query(fleet_dsn, f"SELECT machine_id, agent_started_at FROM {AGENT_STARTED}"))
    beats = dict(query(fleet_dsn, "SELECT * FROM machine_agent_heartbeat"))
    ends = dict(query(fleet_dsn, "SELECT machine_id, until FROM work_backoff"))
    due = {e["machine_id"]: _at(e) for e in entries if e["what"] == "recovery_due"}
    assert due == {
        str(mid(1)): started[mid(1)] + timedelta(minutes=30),
        **{str(mid(n)): beats[mid(n)] + timedelta(minutes=10) for n in (2, 6, 12)},
    }
    assert {e["workflow"] for e in entries if e["what"] == "recovery_due"} == {"AgentRecovery"}
    backoffs = {
        (e["machine_id"], e["process"]): _at(e) for e in entries if e["what"] == "backoff_ends"
    }
    assert backoffs == {
        (str(mid(5)), "ShepherdRecovery"): ends[mid(5)],
        (str(mid(6)), "ShepherdRecovery"): ends[mid(6)],
        (str(mid(10)), "ShepherdAccess"): ends[mid(10)],
    }
    assert [_at(e) for e in entries] == sorted(_at(e) for e in entries)
    assert all(e["url"] == f"/machine/{e['machine_id']}" for e in entries)
    # The thresholds pass at `at`: upstream's selection takes the machine from then on.
    for machine, at in due.items():
        assert machine not in {str(m) for m in run_sync(_selected_at(fleet_dsn, at - US))}
        assert machine in {str(m) for m in run_sync(_selected_at(fleet_dsn, at + US))}


def test_imminent_is_the_next_15_minutes(fleet_dsn):
    with webug_client(fleet_dsn) as client:
        entries = upcoming(client)
        html = client.get("/forecast").text
    imminent = {e["machine_id"] for e in entries if e["imminent"]}
    # Due in 20 (1), 6 (2, 6, 12) minutes; backoffs end in 30 min (5), 2 min (6), 2 h (10).
    assert imminent == {str(mid(n)) for n in (2, 6, 12)}
    assert html.count('class="recovery_due imminent"') == 3
    assert html.count('class="backoff_ends imminent"') == 1
    for e in entries:
        assert f'href="/machine/{e["machine_id"]}"' in html


def test_a_late_heartbeat_is_one_older_than_webug_heartbeat_late_seconds(fleet_dsn):
    with webug_client(fleet_dsn, heartbeat_late_seconds=30) as client:
        due = {e["machine_id"] for e in upcoming(client) if e["what"] == "recovery_due"}
    assert str(mid(3)) in due  # its heartbeat, a minute old, is late now


def test_the_horizon(fleet_dsn):
    with webug_client(fleet_dsn) as client:
        assert str(mid(10)) not in {e["machine_id"] for e in upcoming(client, "&hours=1")}
        assert str(mid(10)) in {e["machine_id"] for e in upcoming(client, "&hours=3")}
        assert client.get("/forecast?format=json").json()["hours"] == 24
        for bad in ("0", "169", "1.5", "x", "-1", "", "¹", "٣", "0024"):
            response = client.get(f"/forecast?hours={bad}")
            assert response.status_code == 400, bad
            assert "a whole number of hours from 1 to 168" in response.text


def test_one_statement_shared_like_the_counts(fleet_dsn):
    with proxied_webug(fleet_dsn) as (proxy, client):
        client.get("/forecast?hours=6")  # a connection opened, the statement prepared
        client.app.state.count_cache.clear()  # due again
        statements, round_trips, response = sent(proxy, lambda: client.get("/forecast?hours=6"))
        assert response.status_code == 200 and (statements, round_trips) == (1, 1)
        statements, _, response = sent(proxy, lambda: client.get("/forecast?hours=6"))
        assert response.status_code == 200 and statements == 0  # within the count cache


def test_the_page_lists_the_first_entries_and_says_where_the_rest_are(fleet_dsn, monkeypatch):
    from app.pages import forecast

    monkeypatch.setattr(forecast, "LISTED", 2)
    with webug_client(fleet_dsn) as client:
        html = client.get("/forecast").text
        total = len(upcoming(client))
    assert html.count('<tr class="') == 2
    assert f"The first 2 of {total}" in html and 'href="/forecast?format=json"' in html
