"""Workflow eligibility on a real PostgreSQL: machines built in each state, their page's
diagnosis, the list's workflow filters and facets, the overview, and the eligible
counts against the upstream components' own selection (docs/workflows.md, "The upstream
rules")."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from app.bmdb import machines as bmdb
from app.bmdb.filters import MachineFilters, build_where
from app.bmdb.machine_states import tally
from app.bmdb.reflection import reflect
from app.bmdb.workflows import (
    BUILTIN,
    STATES,
    compiled,
    decode_groups,
    load_file,
    with_file,
)
from tests.fleet import ALIVE, DEAD, mid
from tests.support import cloned_database, execute, run_sync, webug_client

HTMX = {"HX-Request": "true"}
REPO = Path(__file__).resolve().parents[1]

# What each hand-built machine is for, and its state per workflow.
# (AgentStart, AgentRecovery, OSInstallation)
EXPECTED = {
    101: ("eligible", "not_needed", "not_needed"),  # provided, nothing else
    102: ("waiting", "not_needed", "not_needed"),  # active ShepherdAgentStart backoff
    103: ("blocked", "not_needed", "not_needed"),  # ShepherdAccess work, expired session
    104: ("running", "not_needed", "not_needed"),  # ShepherdAgentStart work, alive session
    105: ("blocked", "not_needed", "not_needed"),  # ShepherdAccess work, alive session
    106: ("not_needed", "not_needed", "not_needed"),  # installation gen 2 = report gen 2 (Error)
    107: ("not_needed", "eligible", "not_needed"),  # agent silent for 15 min
    108: ("not_needed", "eligible", "not_needed"),  # started 40 min ago, never heartbeated
    109: ("not_needed", "waiting", "not_needed"),  # started 10 min ago, never heartbeated
    110: ("not_needed", "not_needed", "not_needed"),  # heartbeat 4 min old
    111: ("not_needed", "waiting", "not_needed"),  # started 25 min ago + backoff for 20 min
    112: ("not_needed", "not_needed", "not_needed"),  # installed: gen 3 = Success report gen 3
    113: ("not_needed", "eligible", "not_needed"),  # gen 3 answered by an Error report
    114: ("eligible", "not_needed", "eligible"),  # request gen 4, report gen 3: pending
    115: ("eligible", "not_needed", "not_needed"),  # an expired backoff blocks nothing
    116: ("not_needed", "blocked", "not_needed"),  # silent agent, stale ShepherdAccess work
    117: ("not_needed", "not_needed", "not_needed"),  # not provided at all
    118: ("not_needed", "running", "not_needed"),  # ShepherdRecovery work, alive session
    119: ("not_needed", "eligible", "not_needed"),  # started 20 min ago, silent for 12
    120: ("not_needed", "not_needed", "not_needed"),  # heartbeats, gen 5 answered by Error
    121: ("not_needed", "not_needed", "not_needed"),  # an agent, never provided
}
# Stuck: some workflow applies, nothing acts or will at a known time, not at rest; by
# blocker. 105's alive work is working, 102, 109 and 111 wait for known moments, 117 and
# 121 are unmanaged (no workflow applies), 112 is installed with Success, 110 heartbeats:
# none of them is stuck. 120 heartbeats too, but its installation failed.
STUCK_BY = {"stale_work": [103, 116], "failed_installation": [106, 120], "no_workflow_acts": []}
STUCK = sorted(n for ns in STUCK_BY.values() for n in ns)
UNMANAGED = [117, 121]
WORKFLOWS = ("AgentStart", "AgentRecovery", "OSInstallation")


def _provided(*ns: int) -> str:
    rows = ", ".join(
        f"('{mid(n)}', '{'Lumen' if n % 2 else 'Equinix'}', 'p-{n}', 'Running')" for n in ns
    )
    return (
        "INSERT INTO machine_provided (machine_id, provider, provider_id, provider_status)"
        f" VALUES {rows}"
    )


def _started(n: int, ago: str) -> str:
    return (
        f"INSERT INTO machine_agent_started VALUES ('{mid(n)}', now() - interval '{ago}', '\\x01')"
    )


def _heartbeat(n: int, ago: str) -> str:
    return f"INSERT INTO machine_agent_heartbeat VALUES ('{mid(n)}', now() - interval '{ago}')"


def _installation(n: int, request: int, report: int | None, result: str = "Success") -> list[str]:
    rows = [f"INSERT INTO machine_os_installation_request VALUES ('{mid(n)}', {request}, '\\x')"]
    if report is not None:
        rows.append(
            f"INSERT INTO machine_os_installation_report VALUES ('{mid(n)}', {report},"
            f" '{result}', '\\x')"
        )
    return rows


def _backoff(n: int, process: str, until: str, cause: str) -> str:
    return (
        f"INSERT INTO work_backoff VALUES ('{mid(n)}', '{process}', now() + interval '{until}',"
        f" '{cause}', 300)"
    )


FLEET = [
    """INSERT INTO machines (machine_id, machine_created_at)
        SELECT (lpad(to_hex(g), 8, '0') || '-0000-4000-8000-000000000000')::uuid, now()
        FROM generate_series(101, 121) g""",
    f"""INSERT INTO sessions VALUES
        ('{ALIVE}', 'shepherd-equinix', 'pid 42', now() - interval '1 hour', 60,
         now() + interval '1 hour'),
        ('{DEAD}', 'shepherd-lumen', 'pid 7', now() - interval '2 hours', 60,
         now() - interval '5 minutes')""",
    _provided(*range(101, 117), 118, 119, 120),
    _backoff(102, "ShepherdAgentStart", "5 minutes", "ssh: connection refused"),
    f"INSERT INTO work VALUES ('{mid(103)}', '{DEAD}', 'ShepherdAccess')",
    f"INSERT INTO work VALUES ('{mid(104)}', '{ALIVE}', 'ShepherdAgentStart')",
    f"INSERT INTO work VALUES ('{mid(105)}', '{ALIVE}', 'ShepherdAccess')",
    *_installation(106, 2, 2, "Error"),
    _started(107, "2 hours"),
    _heartbeat(107, "15 minutes"),
    _started(108, "40 minutes"),
    _started(109, "10 minutes"),
    _started(110, "3 hours"),
    _heartbeat(110, "4 minutes"),
    _started(111, "25 minutes"),
    _backoff(111, "ShepherdRecovery", "20 minutes", "agent unreachable"),
    _started(112, "2 hours"),
    _heartbeat(112, "1 hour"),
    *_installation(112, 3, 3, "Success"),
    _started(113, "2 hours"),
    _heartbeat(113, "1 hour"),
    *_installation(113, 3, 3, "Error"),
    *_installation(114, 4, 3),
    _backoff(115, "ShepherdAgentStart", "-1 hour", "an old failure"),
    _started(116, "2 hours"),
    _heartbeat(116, "1 hour"),
    f"INSERT INTO work VALUES ('{mid(116)}', '{DEAD}', 'ShepherdAccess')",
    _started(118, "2 hours"),
    _heartbeat(118, "1 hour"),
    f"INSERT INTO work VALUES ('{mid(118)}', '{ALIVE}', 'ShepherdRecovery')",
    _started(119, "20 minutes"),
    _heartbeat(119, "12 minutes"),
    _started(120, "2 hours"),
    _heartbeat(120, "1 minute"),
    *_installation(120, 5, 5, "Error"),
    _started(121, "2 hours"),
]


@pytest.fixture(scope="module")
def fleet_dsn(pg_server_dsn, migrated_template):
    with cloned_database(pg_server_dsn, migrated_template, *FLEET) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def client(fleet_dsn):
    with webug_client(fleet_dsn) as c:
        yield c


def workflows_of(client, n: int) -> dict[str, dict]:
    page = client.get(f"/machine/{mid(n)}?format=json")
    assert page.status_code == 200, page.text
    return {w["workflow"]: w for w in page.json()["workflows"]}


def listed(client, query: str) -> list[int]:
    page = client.get(f"/?{query}&limit=5000&format=json")
    assert page.status_code == 200, page.text
    return sorted(int(m["machine_id"][:8], 16) for m in page.json()["machines"])


def at(dsn: str, sql: str) -> datetime:
    async def fetch() -> datetime:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return run_sync(fetch())


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("n", sorted(EXPECTED))
def test_each_machine_is_in_its_state_for_each_workflow(client, n):
    states = workflows_of(client, n)
    assert tuple(states[w]["state"] for w in WORKFLOWS) == EXPECTED[n]
    assert [w["workflow"] for w in client.get(f"/machine/{mid(n)}?format=json").json()[
        "workflows"]] == list(WORKFLOWS)  # fmt: skip


def test_a_backoff_waits_until_it_ends_with_its_cause_and_history(client, fleet_dsn):
    start = workflows_of(client, 102)["AgentStart"]
    until = at(fleet_dsn, f"SELECT until FROM work_backoff WHERE machine_id = '{mid(102)}'")
    assert start["eligible_at"] == iso(until)
    assert start["change"] == "the ShepherdAgentStart backoff ends"
    [blocker] = start["blockers"]
    assert blocker["kind"] == "backoff" and blocker["until"] == iso(until)
    assert "ssh: connection refused" in blocker["detail"]
    assert blocker["url"] == f"/machine/{mid(102)}/history?process=ShepherdAgentStart"


def test_stale_work_blocks_until_garbage_collected_with_its_session(client):
    start = workflows_of(client, 103)["AgentStart"]
    assert start["eligible_at"] is None
    assert start["why"] == "blocked until the expired session's work is garbage-collected"
    [blocker] = start["blockers"]
    assert blocker["kind"] == "stale_work" and blocker["url"] == f"/session/{DEAD}"
    assert "ShepherdAccess" in blocker["detail"] and blocker["until"] is None
    alive = workflows_of(client, 105)["AgentStart"]
    assert [b["kind"] for b in alive["blockers"]] == ["work"]
    assert alive["why"] == "blocked while ShepherdAccess runs"


def test_running_names_the_alive_work_and_its_session(client):
    start = workflows_of(client, 104)["AgentStart"]
    assert start["state"] == "running" and start["eligible_at"] is None
    assert [(b["kind"], b["url"]) for b in start["blockers"]] == [("work", f"/session/{ALIVE}")]


def test_recovery_waits_for_the_30_minutes_a_silent_new_agent_gets(client, fleet_dsn):
    recovery = workflows_of(client, 109)["AgentRecovery"]
    started = at(
        fleet_dsn,
        f"SELECT agent_started_at FROM machine_agent_started WHERE machine_id = '{mid(109)}'",
    )
    assert recovery["eligible_at"] == iso(started + timedelta(minutes=30))
    assert recovery["change"] == "the agent has been silent 30 min since it started"
    [blocker] = recovery["blockers"]
    assert blocker["kind"] == "heartbeat" and blocker["at"] == iso(started)


def test_a_fresh_heartbeat_needs_no_recovery_until_it_is_10_minutes_old(client, fleet_dsn):
    recovery = workflows_of(client, 110)["AgentRecovery"]
    beat = at(
        fleet_dsn,
        f"SELECT agent_heartbeat_at FROM machine_agent_heartbeat WHERE machine_id = '{mid(110)}'",
    )
    assert recovery["state"] == "not_needed"
    assert recovery["eligible_at"] == iso(beat + timedelta(minutes=10))
    assert recovery["change"] == "the heartbeat is 10 min old"
    assert [b["kind"] for b in recovery["blockers"]] == ["heartbeat"]


def test_waiting_for_two_things_is_eligible_when_the_later_ends(client, fleet_dsn):
    recovery = workflows_of(client, 111)["AgentRecovery"]
    until = at(fleet_dsn, f"SELECT until FROM work_backoff WHERE machine_id = '{mid(111)}'")
    assert sorted(b["kind"] for b in recovery["blockers"]) == ["backoff", "heartbeat"]
    assert recovery["eligible_at"] == iso(until)  # later than started + 30 min
    assert recovery["change"] == "the ShepherdRecovery backoff ends"


def test_not_needed_says_why_with_the_tag_or_installation_as_evidence(client):
    start = workflows_of(client, 107)["AgentStart"]
    assert start["why"] == "nothing to do: has AgentStarted"
    [tag] = start["blockers"]
    assert tag["kind"] == "tag" and tag["url"] == f"/machine/{mid(107)}#tag-AgentStarted"
    assert tag["at"] is not None and start["eligible_at"] is None
    installed = workflows_of(client, 112)
    assert [b["kind"] for b in installed["AgentRecovery"]["blockers"]] == ["installation"]
    assert "Success" in installed["AgentRecovery"]["blockers"][0]["detail"]
    unprovided = workflows_of(client, 117)["AgentStart"]
    assert unprovided["blockers"][0]["detail"] == "no Provided tag"


def test_the_page_shows_the_diagnosis_with_ticking_times_and_links(client):
    text = client.get(f"/machine/{mid(102)}").text
    section = text[text.index('<table class="grid workflows"') :]
    assert 'data-state="waiting"' in section
    assert "when the ShepherdAgentStart backoff ends" in section
    assert section.count("data-relative") >= 2  # eligible_at and the backoff's end tick
    assert f'href="/machine/{mid(102)}/history?process=ShepherdAgentStart"' in section
    assert 'id="tag-Provided"' in text  # where tag evidence links to


@pytest.mark.parametrize("workflow", WORKFLOWS)
@pytest.mark.parametrize("state", STATES)
def test_the_list_filter_selects_exactly_the_machines_in_that_state(client, workflow, state):
    index = WORKFLOWS.index(workflow)
    expected = [n for n, states in EXPECTED.items() if states[index] == state]
    assert listed(client, f"workflow={workflow}&workflow_state={state}") == expected


def test_facets_and_overview_count_each_state_and_link_to_its_list(client):
    facets = client.get("/?format=json").json()["facets"]
    overview = client.get("/overview?format=json").json()
    for i, workflow in enumerate(WORKFLOWS):
        counts = {s: sum(1 for e in EXPECTED.values() if e[i] == s) for s in STATES}
        assert facets["workflows"][workflow] == counts
        [row] = [w for w in overview["workflows"] if w["workflow"] == workflow]
        for stat in row["states"]:
            assert stat["count"] == counts[stat["label"]]
            assert len(listed(client, stat["url"].split("?", 1)[1])) == stat["count"]
    assert facets["tabs"]["stuck"] == overview["stuck"]["count"] == len(STUCK)
    assert listed(client, overview["stuck"]["url"].split("?", 1)[1]) == STUCK
    for stat, (blocker, machines) in zip(overview["stuck_by"], STUCK_BY.items(), strict=True):
        assert facets["stuck_by"][blocker] == stat["count"] == len(machines), blocker
        assert listed(client, stat["url"].split("?", 1)[1]) == machines, blocker
    assert facets["tabs"]["unmanaged"] == overview["unmanaged"]["count"] == len(UNMANAGED)
    assert listed(client, overview["unmanaged"]["url"].split("?", 1)[1]) == UNMANAGED
    # OSInstallation has no process, work or backoff: it can only be eligible (or not).
    [osi] = [w for w in overview["workflows"] if w["workflow"] == "OSInstallation"]
    assert [s["label"] for s in osi["states"]] == ["eligible"]


def test_stuck_rows_say_what_blocks_them(client):
    text = client.get("/?stuck=1").text
    assert "<th>Workflows</th>" in text
    row = text[text.index(f'id="m-{mid(116)}"') :]
    row = row[: row.index("</tr>")]
    assert 'data-state="blocked"' in row and "AgentRecovery" in row
    assert "stale ShepherdAccess work" in row and "expired session of shepherd-lumen" in row
    row = text[text.index(f'id="m-{mid(106)}"') :]
    row = row[: row.index("</tr>")]
    assert "no workflow acts: installation failed" in row
    assert "generation 2 is fulfilled by a report of generation 2 (Error)" in row
    assert "<th>Workflows</th>" not in client.get("/").text  # other views stay as dense


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("workflow=Nope", "no workflow &#39;Nope&#39;"),
        ("workflow_state=eligible", "workflow_state needs a workflow"),
        ("workflow=AgentStart&workflow_state=stuck", "workflow_state"),
    ],
)
def test_bad_workflow_filters_are_a_clear_400(client, query, says):
    page = client.get(f"/?{query}")
    assert page.status_code in (400, 422) and says in page.text


def test_workflow_alone_lists_the_machines_it_applies_to(client):
    index = WORKFLOWS.index("AgentStart")
    expected = [n for n, s in EXPECTED.items() if s[index] != "not_needed"]
    assert listed(client, "workflow=AgentStart") == expected


async def _upstream_eligible(conn: asyncpg.Connection, workflow: str) -> int:
    """The upstream components' selection, written from docs/workflows.md's words ("The
    upstream rules"), not from webug's definitions: per provider (one shepherd per
    provider), summed."""
    shepherd = "('ShepherdAccess', 'ShepherdAgentStart', 'ShepherdRecovery')"
    per_provider = {
        "AgentStart": f"""
            SELECT count(*) FROM machine_provided p
            WHERE p.provider = $1::provider
              AND p.machine_id NOT IN (SELECT machine_id FROM machine_agent_started)
              AND (NOT EXISTS (SELECT 1 FROM machine_os_installation_request r
                               WHERE r.machine_id = p.machine_id)
                   OR (SELECT generation FROM machine_os_installation_request r
                       WHERE r.machine_id = p.machine_id)
                      IS DISTINCT FROM (SELECT generation FROM machine_os_installation_report rp
                                        WHERE rp.machine_id = p.machine_id))
              AND p.machine_id NOT IN (SELECT machine_id FROM work
                                       WHERE process::text IN {shepherd})
              AND p.machine_id NOT IN (SELECT machine_id FROM work_backoff
                                       WHERE process = 'ShepherdAgentStart' AND until > now())""",
        "AgentRecovery": f"""
            SELECT count(*) FROM machine_provided p
            JOIN machine_agent_started a ON a.machine_id = p.machine_id
            LEFT JOIN machine_agent_heartbeat h ON h.machine_id = p.machine_id
            WHERE p.provider = $1::provider
              AND (NOT EXISTS (SELECT 1 FROM machine_os_installation_request r
                               WHERE r.machine_id = p.machine_id)
                   OR (SELECT generation FROM machine_os_installation_request r
                       WHERE r.machine_id = p.machine_id)
                      IS DISTINCT FROM (SELECT generation FROM machine_os_installation_report rp
                                        WHERE rp.machine_id = p.machine_id
                                          AND rp.os_installation_result = 'Success'))
              AND ((h.machine_id IS NULL AND a.agent_started_at < now() - interval '30 minutes')
                   OR h.agent_heartbeat_at < now() - interval '10 minutes')
              AND p.machine_id NOT IN (SELECT machine_id FROM work
                                       WHERE process::text IN {shepherd})
              AND p.machine_id NOT IN (SELECT machine_id FROM work_backoff
                                       WHERE process = 'ShepherdRecovery' AND until > now())""",
    }[workflow]
    providers = await conn.fetchval("SELECT enum_range(NULL::provider)::text[]")
    return sum([await conn.fetchval(per_provider, p) for p in providers])


async def _eligible_counts_match_upstream(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        schema = await reflect(conn)
        fleet = compiled(schema)
        # One transaction: now() is the same instant for webug's count and upstream's.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            where = build_where(MachineFilters(), schema)
            sql, params = bmdb.facets_statement(schema, where, fleet)
            doc = json.loads(await conn.fetchval(sql, *params))
            counts = tally(fleet, decode_groups(fleet, doc["workflows"])).workflows
            for workflow in ("AgentStart", "AgentRecovery"):
                upstream = await _upstream_eligible(conn, workflow)
                assert counts[workflow]["eligible"] == upstream, workflow
                assert upstream > 0, workflow  # the comparison compares something
    finally:
        await conn.close()


async def test_eligible_counts_equal_the_upstream_selection_on_the_built_fleet(fleet_dsn):
    await _eligible_counts_match_upstream(fleet_dsn)


async def test_eligible_counts_equal_the_upstream_selection_on_a_seeded_fleet(seeded_db_dsn):
    await _eligible_counts_match_upstream(seeded_db_dsn)


def test_a_state_flips_on_the_live_fragment_when_its_backoff_ends(migrated_db_dsn):
    run_sync(execute(
        migrated_db_dsn,
        f"INSERT INTO machines VALUES ('{mid(1)}', now())",
        _provided(1),
        _backoff(1, "ShepherdAgentStart", "3 seconds", "flaky BMC"),
    ))  # fmt: skip
    with webug_client(migrated_db_dsn) as client:
        path = f"/machine/{mid(1)}/live"
        first = client.get(path, headers=HTMX)
        assert 'data-state="waiting"' in first.text
        ptag = first.headers["HX-PTag"]
        # Relative times tick in the browser: until the state changes, polls are 304s.
        assert client.get(path, headers={**HTMX, "HX-PTag": ptag}).status_code == 304
        time.sleep(3.5)
        flipped = client.get(path, headers={**HTMX, "HX-PTag": ptag})
        assert flipped.status_code == 200 and 'data-state="eligible"' in flipped.text


def test_a_schema_without_the_tables_shows_unknown_never_an_error(migrated_db_dsn):
    run_sync(execute(
        migrated_db_dsn,
        f"INSERT INTO machines VALUES ('{mid(1)}', now())",
        "DROP TABLE machine_agent_heartbeat",
    ))  # fmt: skip
    with webug_client(migrated_db_dsn) as client:
        states = workflows_of(client, 1)
        assert states["AgentRecovery"]["state"] == "unknown"
        assert "machine_agent_heartbeat.agent_heartbeat_at" in states["AgentRecovery"]["missing"]
        assert states["AgentStart"]["state"] == "not_needed"  # the others still work
        assert "unknown for this schema version" in client.get(f"/machine/{mid(1)}").text
        assert listed(client, "workflow=AgentRecovery&workflow_state=unknown") == [1]
        assert listed(client, "workflow=AgentRecovery&workflow_state=eligible") == []
        facets = client.get("/?format=json").json()["facets"]
        assert facets["workflows"]["AgentRecovery"] == {"unknown": 1}
        overview = client.get("/overview")
        assert overview.status_code == 200 and "unknown for this schema version" in overview.text


def test_an_older_schema_version_lacks_the_shepherd_processes(pg_server_dsn):
    from app.bmdb.migrate import migrate

    with cloned_database(pg_server_dsn, "template0") as dsn:
        run_sync(migrate(dsn, target=1681909788))  # before extra_shepherd_processes
        run_sync(execute(dsn, f"INSERT INTO machines VALUES ('{mid(1)}', now())"))
        with webug_client(dsn) as client:
            states = workflows_of(client, 1)
            assert states["AgentStart"]["state"] == "unknown"
            assert "process ShepherdAgentStart" in states["AgentStart"]["missing"]
            assert states["OSInstallation"]["state"] == "not_needed"
            assert client.get("/?stuck=1").status_code == 200


WORKFLOW_FILE = {
    "workflows": [
        {
            "name": "HardwareAudit",
            "component": "hardware auditor",
            "has": ["AgentStarted"],
            "lacks": ["HardwareReport"],
            "no_backoff_of": ["UnitTest1"],
        }
    ]
}


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_a_workflows_file_adds_a_workflow(fleet_dsn, tmp_path, suffix):
    path = tmp_path / f"workflows{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(WORKFLOW_FILE))
    else:
        path.write_text(
            '[[workflows]]\nname = "HardwareAudit"\ncomponent = "hardware auditor"\n'
            'has = ["AgentStarted"]\nlacks = ["HardwareReport"]\nno_backoff_of = ["UnitTest1"]\n'
        )
    with webug_client(fleet_dsn, workflows=path) as client:
        audit = workflows_of(client, 107)["HardwareAudit"]
        assert audit["state"] == "eligible" and audit["component"] == "hardware auditor"
        assert workflows_of(client, 101)["HardwareAudit"]["state"] == "not_needed"
        started = [n for n in EXPECTED if n in (107, 108, 109, 110, 111, 112, 113, 116, 118, 119,
                                                120, 121)]
        assert listed(client, "workflow=HardwareAudit&workflow_state=eligible") == started
        assert client.get("/?format=json").json()["facets"]["workflows"]["HardwareAudit"][
            "eligible"] == len(started)  # fmt: skip


def test_a_bad_workflows_file_stops_webug_at_start_with_one_line(tmp_path):
    path = tmp_path / "workflows.json"
    path.write_text(json.dumps({"workflows": [{"name": "X", "component": "c", "hass": []}]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBUG_")}
    env.update(WEBUG_WORKFLOWS=str(path))
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("webug: invalid configuration: WEBUG_WORKFLOWS:")
    assert "hass" in lines[0] and "Traceback" not in result.stderr


def test_the_docs_show_the_built_in_definitions_as_they_are(tmp_path):
    section = (REPO / "docs" / "workflows.md").read_text()
    start = section.index("```json\n") + len("```json\n")
    example = section[start : section.index("```\n", start)]
    path = tmp_path / "builtin.json"
    path.write_text(example)
    assert load_file(path) == BUILTIN


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("w.yaml", "workflows:\n  - {name: Y, component: c, lacks: [Provided]}\n", None),
        ("w.json", '{"workflows": [', "is not valid json"),
        ("w.toml", "[[workflows]]\nname = 3\n", "workflows.0.name"),
        (
            "w.json",
            json.dumps({"workflows": [{"name": "A", "component": "c"}] * 2}),
            "'A' is defined twice",
        ),
    ],
)
def test_a_workflows_file_is_json_toml_or_yaml_and_says_what_is_wrong(tmp_path, name, text, says):
    path = tmp_path / name
    path.write_text(text)
    if says is None:
        assert [w.name for w in load_file(path)] == ["Y"]
        assert [w.name for w in with_file(path)] == [*(w.name for w in BUILTIN), "Y"]
        return
    with pytest.raises(ValueError, match=re.escape(says)):
        load_file(path)
