"""The fleet gauges of /metrics (app/fleet/) on a real PostgreSQL: every `bmdb_stats_*`
value equals upstream's own query, written here from the words of docs/operating.md
("Fleet gauges"), on a fleet of known states; webug's own gauges equal what the list
shows; one process per host collects; the values stay while the BMDB cannot be read."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.bmdb.workflows import SHEPHERD_PROCESSES
from tests.fleet import ALIVE, DEAD, SMALL_FLEET
from tests.support import TableLock, cloned_database, execute, run_sync, webug_client

N = 360
ID = "(lpad(to_hex(g), 8, '0') || '-0000-4000-8000-000000000000')::uuid"


def _each(condition: str, insert: str, select: str) -> str:
    return f"INSERT INTO {insert} SELECT {select} FROM generate_series(1, {N}) g WHERE {condition}"


# Machine g's tags, work and backoffs follow from g's residues, so every combination the
# statistics tell apart occurs: with and without Provided, agents started 0-60 min ago,
# heartbeats 0-12 min old or none, requests answered by a report of the same or another
# generation (Success or Error) or by none, work of alive and expired sessions, backoffs
# active and expired.
KNOWN_STATES = [
    f"INSERT INTO machines SELECT {ID}, now() - g * interval '1 hour'"
    f" FROM generate_series(1, {N}) g",
    f"""INSERT INTO sessions VALUES
        ('{ALIVE}', 'shepherd-equinix', 'pid 42', now() - interval '1 hour', 60,
         now() + interval '1 hour'),
        ('{DEAD}', 'shepherd-lumen', 'pid 7', now() - interval '2 hours', 60,
         now() - interval '5 minutes')""",
    _each("g % 6 <> 0", "machine_provided (machine_id, provider, provider_id, provider_location)",
          f"{ID}, (ARRAY['Equinix', 'Lumen', 'None'])[1 + g % 3]::provider, 'p-' || g,"
          " CASE WHEN g % 17 = 0 THEN NULL ELSE 'loc' || g % 2 END"),
    _each("g % 5 IN (1, 2, 3)", "machine_agent_started",
          f"{ID}, now() - (g % 4) * interval '20 minutes', '\\x01'::bytea"),
    _each("g % 7 IN (1, 2, 3, 4)", "machine_agent_heartbeat",
          f"{ID}, now() - (g % 5) * interval '3 minutes'"),
    _each("g % 4 IN (0, 1)", "machine_os_installation_request",
          f"{ID}, 1 + g % 2, '\\x08'::bytea"),
    _each("g % 8 IN (0, 1, 2)", "machine_os_installation_report",
          f"{ID}, 1 + (g / 3) % 2,"
          " (CASE WHEN g % 3 = 0 THEN 'Success' ELSE 'Error' END)::machine_os_installation_result,"
          " '\\x08'::bytea"),
    _each("g % 11 = 0", "work", f"{ID}, '{ALIVE}', 'ShepherdAccess'"),
    _each("g % 13 = 0", "work", f"{ID}, '{DEAD}', 'ShepherdRecovery'"),
    _each("g % 19 = 0", "work", f"{ID}, '{ALIVE}', 'UnitTest1'"),
    _each("g % 23 = 0", "work", f"{ID}, '{DEAD}', 'ShepherdAgentStart'"),
    _each("g % 9 = 0", "work_backoff", f"{ID}, 'ShepherdRecovery', now() + interval '10 minutes',"
          " 'agent unreachable at 10.0.' || g % 250 || '.1', 600"),
    _each("g % 10 = 0", "work_backoff",
          f"{ID}, 'ShepherdAgentStart', now() - interval '1 hour', 'old', 60"),
    _each("g % 12 = 0", "work_backoff",
          f"{ID}, 'ShepherdAccess', now() + interval '2 hours', 'ssh: connection refused', 7200"),
]  # fmt: skip

# Upstream's statistics in the words of docs/operating.md ("Fleet gauges") and
# docs/workflows.md ("The upstream rules"), each a plain count, as its exporter ran them.
SHEPHERD = "('ShepherdAccess', 'ShepherdAgentStart', 'ShepherdRecovery')"
UPSTREAM = {
    "bmdb_stats_machines": "SELECT count(*) FROM machines",
    "bmdb_stats_machines_provided": "SELECT count(*) FROM machine_provided",
    "bmdb_stats_machines_heartbeating": """
        SELECT count(*) FROM machine_provided p
        JOIN machine_agent_heartbeat h ON h.machine_id = p.machine_id
        WHERE h.agent_heartbeat_at > now() - interval '10 minutes'""",
    "bmdb_stats_machines_pending_installation": """
        SELECT count(*) FROM machine_provided p
        JOIN machine_os_installation_request r ON r.machine_id = p.machine_id
        LEFT JOIN machine_os_installation_report rep ON rep.machine_id = p.machine_id
        WHERE r.generation IS DISTINCT FROM rep.generation""",
    "bmdb_stats_machines_installed": """
        SELECT count(*) FROM machine_provided p
        JOIN machine_os_installation_request r ON r.machine_id = p.machine_id
        JOIN machine_os_installation_report rep ON rep.machine_id = p.machine_id
        WHERE r.generation IS NOT DISTINCT FROM rep.generation""",
    "bmdb_stats_machines_pending_agent_start": f"""
        SELECT count(*) FROM machine_provided p
        WHERE NOT EXISTS (SELECT 1 FROM machine_agent_started a WHERE a.machine_id = p.machine_id)
          AND NOT EXISTS (SELECT 1 FROM machine_os_installation_request r
                          LEFT JOIN machine_os_installation_report rep USING (machine_id)
                          WHERE r.machine_id = p.machine_id
                            AND r.generation IS NOT DISTINCT FROM rep.generation)
          AND NOT EXISTS (SELECT 1 FROM work w
                          WHERE w.machine_id = p.machine_id AND w.process IN {SHEPHERD})
          AND NOT EXISTS (SELECT 1 FROM work_backoff b WHERE b.machine_id = p.machine_id
                            AND b.process = 'ShepherdAgentStart' AND b.until > now())""",
    # The statistics' quirk: the installation compared with any report, not a Success one.
    "bmdb_stats_machines_pending_agent_recovery": f"""
        SELECT count(*) FROM machine_provided p
        JOIN machine_agent_started a ON a.machine_id = p.machine_id
        LEFT JOIN machine_agent_heartbeat h ON h.machine_id = p.machine_id
        WHERE NOT EXISTS (SELECT 1 FROM machine_os_installation_request r
                          JOIN machine_os_installation_report rep USING (machine_id)
                          WHERE r.machine_id = p.machine_id
                            AND r.generation IS NOT DISTINCT FROM rep.generation)
          AND ((h.machine_id IS NULL AND a.agent_started_at < now() - interval '30 minutes')
               OR h.agent_heartbeat_at < now() - interval '10 minutes')
          AND NOT EXISTS (SELECT 1 FROM work w
                          WHERE w.machine_id = p.machine_id AND w.process IN {SHEPHERD})
          AND NOT EXISTS (SELECT 1 FROM work_backoff b WHERE b.machine_id = p.machine_id
                            AND b.process = 'ShepherdRecovery' AND b.until > now())""",
}
UPSTREAM_PER_PROCESS = {
    "bmdb_stats_active_work": "SELECT process::text, count(*) FROM work GROUP BY process",
    "bmdb_stats_active_backoffs": "SELECT process::text, count(*) FROM work_backoff GROUP BY 1",
}


def metrics(text: str) -> dict[str, dict[tuple, float]]:
    """{family: {sorted labels: value}} of an exposition."""
    return {
        f.name: {tuple(sorted(s.labels.items())): s.value for s in f.samples}
        for f in text_string_to_metric_families(text)
    }


def collected(client, after: float = 0.0, timeout: float = 30.0) -> dict:
    """/metrics once the fleet gauges were collected (after `after`, a Unix time)."""
    deadline = time.monotonic() + timeout
    while True:
        found = metrics(client.get("/metrics").text)
        stamp = found.get("webug_fleet_stats_collected_timestamp_seconds", {}).get(())
        if stamp is not None and stamp > after:
            return found
        assert time.monotonic() < deadline, "the fleet gauges were not collected in time"
        time.sleep(0.05)


async def _counts(dsn: str, sql: str) -> list:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def query(dsn: str, sql: str) -> list[tuple]:
    return run_sync(_counts(dsn, sql))


@pytest.fixture(scope="module")
def known_fleet(pg_server_dsn: str, migrated_template: str) -> Iterator[str]:
    with cloned_database(pg_server_dsn, migrated_template, *KNOWN_STATES) as dsn:
        yield dsn


@pytest.fixture
def small_fleet(migrated_db_dsn: str) -> str:
    """tests/fleet.py's 12 machines, in a database of the test's own (no other webug
    collects from it)."""
    run_sync(execute(migrated_db_dsn, *SMALL_FLEET))
    return migrated_db_dsn


@pytest.fixture(scope="module")
def fleet_client(known_fleet: str):
    with webug_client(known_fleet, fleet_stats_seconds=3600) as client:
        yield client


def test_every_upstream_gauge_equals_upstreams_own_query(known_fleet, fleet_client):
    found = collected(fleet_client)
    for name, sql in UPSTREAM.items():
        ((expected,),) = query(known_fleet, sql)
        assert found[name] == {(): expected}, name
        assert 0 < expected <= N, f"{name}: the fleet must have machines it counts"
    for name, sql in UPSTREAM_PER_PROCESS.items():
        rows = dict(query(known_fleet, sql))
        # Always the shepherd processes (0 when no row), others when they have rows.
        expected = {p: rows.get(p, 0) for p in {*SHEPHERD_PROCESSES, *rows}}
        assert found[name] == {(("process", p),): n for p, n in expected.items()}, name
    # The quirks are real here: rows the names do not suggest are counted.
    assert found["bmdb_stats_active_work"][(("process", "ShepherdRecovery"),)] > 0  # all stale
    stale = found["webug_fleet_stale_work"][(("process", "ShepherdRecovery"),)]
    assert stale == found["bmdb_stats_active_work"][(("process", "ShepherdRecovery"),)]
    expired = query(known_fleet, "SELECT count(*) FROM work_backoff WHERE until <= now()")
    active = sum(found["webug_fleet_backoffs_active"].values())
    assert sum(found["bmdb_stats_active_backoffs"].values()) == active + expired[0][0]


def _list_total(client, query_string: str) -> int:
    return client.get(f"/?{query_string}&format=json").json()["total"]


def test_webugs_own_gauges_equal_the_lists_they_count(fleet_client):
    found = collected(fleet_client)
    for labels, n in found["webug_fleet_workflow_machines"].items():
        workflow, state = dict(labels)["workflow"], dict(labels)["state"]
        if state in ("eligible", "running", "waiting", "blocked"):
            total = _list_total(fleet_client, f"workflow={workflow}&workflow_state={state}")
            assert n == total, labels
    stuck = found["webug_fleet_stuck_machines"]
    assert sum(stuck.values()) == _list_total(fleet_client, "stuck=1")
    # Each blocker is the list's, the first that holds: stale work first.
    assert stuck[(("blocker", "stale_work"),)] == _list_total(fleet_client, "stuck=1&stale=1") > 0
    for blocker in ("stale_work", "failed_installation"):
        assert stuck[(("blocker", blocker),)] == _list_total(fleet_client, f"blocker={blocker}")
    failed = _list_total(fleet_client, "stuck=1&installation=failed")
    stale_and_failed = _list_total(fleet_client, "stuck=1&installation=failed&stale=1")
    assert stuck[(("blocker", "failed_installation"),)] == failed - stale_and_failed > 0
    # Unmanaged machines (no Provided tag, no installation request) are not stuck.
    assert _list_total(fleet_client, "stuck=1&lacks=Provided&lacks=OSInstallationRequest") == 0
    assert _list_total(fleet_client, "unmanaged=1") > 0
    for labels, n in found["webug_fleet_backoffs_active"].items():
        assert n == _list_total(fleet_client, f"backoff={dict(labels)['process']}"), labels
    for labels, n in found["webug_fleet_failure_group_machines"].items():
        assert n == _list_total(fleet_client, f"failure={dict(labels)['group']}"), labels
    ending = found["webug_fleet_backoffs_ending"]
    assert ending[(("process", "ShepherdRecovery"), ("within", "15m"))] == N // 9
    assert ending[(("process", "ShepherdAccess"), ("within", "15m"))] == 0
    assert ending[(("process", "ShepherdAccess"), ("within", "1h"))] == 0
    # The oldest stuck machine: the list's oldest by creation, its age in the gauge.
    oldest = fleet_client.get("/?stuck=1&sort=created&limit=50&format=json").json()
    created = oldest["machines"][0]["created_at"]
    age = found["webug_fleet_stuck_oldest_machine_age_seconds"][()]
    expected_age = time.time() - datetime.fromisoformat(created).timestamp()
    assert abs(age - expected_age) < 60


def test_one_process_per_host_collects_and_the_others_answer_from_its_file(small_fleet):
    with contextlib.ExitStack() as first_running:
        first = first_running.enter_context(webug_client(small_fleet, fleet_stats_seconds=0.2))
        a = collected(first)
        with webug_client(small_fleet, fleet_stats_seconds=0.2) as second:
            holder, other = first.app.state.fleet_stats, second.app.state.fleet_stats
            assert holder.share.holding and not other.share.holding
            b = collected(second, after=a["webug_fleet_stats_collected_timestamp_seconds"][()])
            assert b["bmdb_stats_machines"] == {(): 12}
            assert other.collections == 0 and holder.collections >= 2
            # When the holder's process ends, another takes over within an interval.
            first_running.close()
            assert not holder.share.holding
            collected(second, after=time.time())
            assert other.share.holding and other.collections >= 1


def test_a_scrape_never_waits_for_a_collection(small_fleet):
    stamp = "webug_fleet_stats_collected_timestamp_seconds"
    with webug_client(small_fleet, fleet_stats_seconds=0.2, history_timeout_ms=60_000) as client:
        collected(client)
        with TableLock(small_fleet, "machines"):
            # The next collection waits for the lock (up to its 60 s budget)...
            blocked = _blocked_statements(small_fleet)
            assert blocked, "the collection should wait for the table lock"
            before = metrics(client.get("/metrics").text)
            time.sleep(0.5)  # two intervals and more
            during = metrics(client.get("/metrics").text)
            # ...while scrapes answer with the values collected before: that same statement
            # still waits.
            assert _blocked_statements(small_fleet, timeout=0) == blocked
            assert during[stamp] == before[stamp]
            assert during["bmdb_stats_machines"] == {(): 12}


def test_values_and_their_age_stay_while_the_bmdb_is_down():
    from tests.outage import RestartablePostgres

    server = RestartablePostgres()
    try:
        dsn = server.create_bmdb(30)
        with webug_client(dsn, fleet_stats_seconds=0.2) as client:
            before = collected(client)
            server.stop()
            deadline = time.monotonic() + 30
            while True:
                during = metrics(client.get("/metrics").text)
                if during["webug_fleet_stats_consecutive_failures"][()] >= 2:
                    break
                assert time.monotonic() < deadline, "collections should fail while it is down"
                time.sleep(0.05)
            stamp = "webug_fleet_stats_collected_timestamp_seconds"
            assert during[stamp] == before[stamp]  # time() minus it: their age
            assert during["bmdb_stats_machines"] == {(): 30}
            assert during["bmdb_hwstats_region_nodes"] == before["bmdb_hwstats_region_nodes"]
            server.start()
            after = collected(client, after=before[stamp][()])
            assert after["webug_fleet_stats_consecutive_failures"] == {(): 0}
    finally:
        server.close()


def _blocked_statements(dsn: str, timeout: float = 10.0) -> list[tuple]:
    """(pid, query_start) of webug's statements waiting for a lock in `dsn`'s database
    (waiting up to `timeout` for one)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = query(dsn, "SELECT pid, query_start FROM pg_stat_activity"
                     " WHERE application_name = 'webug' AND wait_event_type = 'Lock'"
                     " AND datname = current_database() ORDER BY pid")  # fmt: skip
        if rows or time.monotonic() >= deadline:
            return rows
        time.sleep(0.05)
