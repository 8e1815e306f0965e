"""Failure signatures (/failures) and the list's failure= filter, on a real PostgreSQL.

The normalizer is checked on realistic causes (app/demo/seed.py's generators and
hand-written ones): variants that differ only in IDs, addresses, numbers or durations
share a signature, different causes keep theirs. It is also applied with Python's `re`,
whose leftmost-first matching is that of Go's RE2 (CockroachDB's engine): the patterns
mean the same on both servers only if PostgreSQL and `re` agree on every cause.
"""

from __future__ import annotations

import hashlib
import html
import random
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import asyncpg
import pytest

from app.bmdb.failures import SIGNATURE_STEPS, signature_sql
from app.demo import seed
from tests.fleet import machines_sql, mid
from tests.support import TableLock, cloned_database, run_sync, webug_client

ROW = re.compile(r'<tr id="m-([0-9a-f-]{36})"')


def pg_signatures(dsn: str, causes: list[str]) -> list[str]:
    async def query() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                f"SELECT {signature_sql('c')} AS sig FROM unnest($1::text[]) WITH ORDINALITY"
                " AS t(c, i) ORDER BY i",
                causes,
            )
        finally:
            await conn.close()
        return [r["sig"] for r in rows]

    return run_sync(query())


def re_signature(cause: str) -> str:
    """The same steps with Python's `re` (leftmost-first, like RE2)."""
    for step in SIGNATURE_STEPS:
        for _ in range(step.passes):
            cause = re.sub(step.pattern, step.replacement, cause)
    return cause


# Realistic causes: (variants that must share one signature, that signature).
SAME = [
    (
        [
            "while dialing SSH: dial tcp 147.75.81.3:22: connect: connection refused",
            "while dialing SSH: dial tcp 10.42.0.254:2222: connect: connection refused",
            "while dialing SSH: dial tcp [2604:1380:4641:c500::1]:22: connect: connection refused",
        ],
        "while dialing SSH: dial tcp <ip>:<n>: connect: connection refused",
    ),
    (
        [
            "GET https://api.equinix.com/metal/v1/devices/3f2504e0-4f89-41d3-9a0c-0305e82c3301:"
            " 503 Service Unavailable",
            "GET https://api.equinix.com/metal/v1/devices/9B2C1D4E-0000-4000-8000-AABBCCDDEEFF:"
            " 502 Service Unavailable",
        ],
        "GET https://api.equinix.com/metal/v1/devices/<uuid>: <n> Service Unavailable",
    ),
    (
        [
            "context deadline exceeded after 30s (attempt 3)",
            "context deadline exceeded after 1h2m3.5s (attempt 12)",
            "context deadline exceeded after 250ms (attempt 1)",
        ],
        "context deadline exceeded after <duration> (attempt <n>)",
    ),
    (
        [
            "agent did not start:\nProcess exited with status 2\n  goroutine 1 [running]:\n"
            "  /build/cloud/agent/main.go:87 +0x3a5",
            "agent did not start:\nProcess exited with status 137\n  goroutine 41 [running]:\n"
            "  /build/cloud/agent/main.go:112 +0x1f",
        ],
        "agent did not start:\nProcess exited with status <n>\n  goroutine <n> [running]:\n"
        "  /build/cloud/agent/main.go:<n> +<n>",
    ),
    (
        [
            "session shepherd-equinix-1a2b3c4d at 2024-05-01T12:34:56.789Z: lease lost (v0.14.1)",
            "session shepherd-equinix-0f00ba47 at 2026-11-30 08:00:01+00: lease lost (v0.13.2)",
        ],
        "session shepherd-equinix-<n> at <time>: lease lost (<n>)",
    ),
    (["fe80::1%eth0 unreachable, 1 2 3 retries", "::1 unreachable, 4 5 6 retries"],
     "<ip> unreachable, <n> <n> <n> retries"),  # fmt: skip
    (  # checksums and hashes of hex digits that happen to be digits only, or not
        [
            "image checksum mismatch: got 8712897090224467, want 3fa2c19e0b7d5a61",
            "image checksum mismatch: got 9c0e4b1d77a2f3e8, want 1290883746512093",
            "image checksum mismatch: got 40f9a1c3, want 12345678",
        ],
        "image checksum mismatch: got <n>, want <n>",
    ),
]
# Causes that must keep signatures of their own (names with digits stay: sda1, x509).
DIFFERENT = [
    "while dialing SSH: dial tcp 10.0.0.1:22: connect: connection refused",
    "while dialing SSH: dial tcp 10.0.0.1:22: i/o timeout",
    "provider no longer knows this device (404 Not Found)",
    "while writing ESP: short write on /dev/sda1",
    "while writing ESP: short write on /dev/sdb1",
    "x509: certificate signed by unknown authority",
    "agent did not heartbeat within 30s after 3 attempts",
    "agent did not heartbeat within 30s after 3 attempt",
    "",
]


def seed_causes() -> tuple[list[str], list[str]]:
    """(causes, their template): every cause generator of the demo seeder, each template
    with several machine addresses."""
    causes, templates = [], []
    generators = [*seed.CAUSES.values(), lambda rng, ip: rng.choice(seed.INSTALL_ERRORS)]
    for generator in generators:
        for k in range(30):
            template = generator(random.Random(k), "IP")
            for ip in ("10.42.0.7", "147.75.200.13", "8.30.1.254"):
                causes.append(generator(random.Random(k), ip))
                templates.append(template)
    return causes, templates


def test_variants_share_a_signature_and_different_causes_keep_theirs(pg_server_dsn):
    causes = [c for variants, _ in SAME for c in variants] + DIFFERENT
    signatures = pg_signatures(pg_server_dsn, causes)
    by_cause = dict(zip(causes, signatures, strict=True))
    for variants, expected in SAME:
        assert {by_cause[c] for c in variants} == {expected}, variants
    different = [by_cause[c] for c in DIFFERENT]
    assert len(set(different)) == len(DIFFERENT), different
    assert by_cause["while writing ESP: short write on /dev/sda1"].endswith("/dev/sda1")


def test_the_seeders_causes_group_by_template(pg_server_dsn):
    causes, templates = seed_causes()
    signatures = pg_signatures(pg_server_dsn, causes)
    of_template: dict[str, set[str]] = {}
    for template, signature in zip(templates, signatures, strict=True):
        of_template.setdefault(template, set()).add(signature)
    assert all(len(s) == 1 for s in of_template.values()), of_template  # addresses merge
    distinct = {next(iter(s)) for s in of_template.values()}
    assert len(distinct) == len(of_template)  # templates stay apart
    assert "while dialing SSH: dial tcp <ip>:<n>: i/o timeout" in distinct


def test_postgresql_and_re2_style_matching_agree(pg_server_dsn):
    causes = seed_causes()[0] + [c for v, _ in SAME for c in v] + DIFFERENT
    causes += ["std::vector<int> failed", "a::b", "[::1]:22", "1.2.3.4.5", "0x 0x1 0xG", "µs 5µs"]
    assert pg_signatures(pg_server_dsn, causes) == [re_signature(c) for c in causes]


# ----------------------------------------------------------------------- /failures

CONNECT = "while dialing SSH: dial tcp {}:22: connect: connection refused"
HEARTBEAT = "agent did not heartbeat within {} after {}"
FLEET = [
    machines_sql(1, 8),
    # Active backoffs (one expired); a backoff's failure was at until - interval.
    f"""INSERT INTO work_backoff VALUES
        ('{mid(1)}', 'ShepherdAgentStart', now() + interval '5 minutes',
         '{CONNECT.format("10.1.2.3")}', 3600),
        ('{mid(2)}', 'ShepherdAgentStart', now() + interval '20 minutes',
         '{CONNECT.format("147.75.1.9")}', 1800),
        ('{mid(3)}', 'ShepherdRecovery', now() + interval '5 minutes',
         '{CONNECT.format("[2604:1380::9]")}', 600),
        ('{mid(2)}', 'ShepherdRecovery', now() + interval '5 minutes',
         'while dialing SSH: dial tcp 147.75.1.9:22: i/o timeout', 60),
        ('{mid(4)}', 'ShepherdAccess', now() - interval '1 hour',
         '{CONNECT.format("10.1.2.4")}', 60),
        ('{mid(5)}', 'ShepherdAccess', now() + interval '1 hour',
         'GET https://api.equinix.com/metal/v1/devices/{mid(5)}: 503 Service Unavailable', NULL)
    """,
    # Failed work: within 24 h but for the last row; mid(99) is a deleted machine.
    f"""INSERT INTO work_history VALUES
        ('{mid(1)}', 'ShepherdAgentStart', 'Failed', now() - interval '2 hours',
         '{CONNECT.format("10.1.2.3")}'),
        ('{mid(1)}', 'ShepherdAgentStart', 'Failed', now() - interval '1 hour',
         '{CONNECT.format("10.1.2.3")}'),
        ('{mid(6)}', 'ShepherdAgentStart', 'Failed', now() - interval '3 hours',
         '{CONNECT.format("[2604:1380:4641:c500::1]")}'),
        ('{mid(99)}', 'ShepherdAgentStart', 'Failed', now() - interval '30 minutes',
         '{CONNECT.format("10.9.9.9")}'),
        ('{mid(7)}', 'ShepherdRecovery', 'Failed', now() - interval '4 hours',
         '{HEARTBEAT.format("30s", "3 attempts")}'),
        ('{mid(8)}', 'ShepherdRecovery', 'Failed', now() - interval '5 hours',
         '{HEARTBEAT.format("1m30s", "12 attempts")}'),
        ('{mid(7)}', 'ShepherdAccess', 'Failed', now() - interval '6 hours',
         '{HEARTBEAT.format("2h", "1 attempt")}'),
        ('{mid(4)}', 'ShepherdAccess', 'Failed', now() - interval '1 hour', NULL),
        ('{mid(3)}', 'ShepherdAccess', 'Started', now() - interval '7 hours', NULL),
        ('{mid(3)}', 'ShepherdAccess', 'Finished', now() - interval '6 hours', NULL),
        ('{mid(3)}', 'ShepherdAccess', 'Failed', now() - interval '30 hours', 'old failure 5')
    """,
]
CONNECT_SIG = "while dialing SSH: dial tcp <ip>:<n>: connect: connection refused"
HEARTBEATS = "agent did not heartbeat within <duration> after <n> attempts"
HEARTBEAT_1 = HEARTBEATS.removesuffix("s")
UNAVAILABLE = "GET https://api.equinix.com/metal/v1/devices/<uuid>: <n> Service Unavailable"


@pytest.fixture(scope="module")
def fleet_dsn(pg_server_dsn, migrated_template):
    with cloned_database(pg_server_dsn, migrated_template, *FLEET) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def client(fleet_dsn):
    with webug_client(fleet_dsn) as c:
        yield c


def failures(client, query: str = "") -> dict:
    response = client.get(f"/failures?format=json{query}")
    assert response.status_code == 200, response.text
    return response.json()


def groups_of(data: dict, source: str) -> dict[str, dict]:
    return {g["signature"]: g for g in data["groups"] if g["source"] == source}


def listed(client, url: str) -> set[UUID]:
    response = client.get(url + "&limit=5000")
    assert response.status_code == 200, response.text
    return {UUID(m) for m in ROW.findall(response.text)}


def test_backoff_groups(client):
    data = failures(client)
    backoffs = groups_of(data, "backoff")
    assert {s: (g["machines"], g["events"], g["processes"]) for s, g in backoffs.items()} == {
        CONNECT_SIG: (3, 3, ["ShepherdAgentStart", "ShepherdRecovery"]),
        "while dialing SSH: dial tcp <ip>:<n>: i/o timeout": (1, 1, ["ShepherdRecovery"]),
        UNAVAILABLE: (1, 1, ["ShepherdAccess"]),
    }  # the expired backoff of mid(4) is in none
    connect = backoffs[CONNECT_SIG]
    assert connect["example"] in {CONNECT.format(ip) for ip in ("10.1.2.3", "147.75.1.9",
                                                                "[2604:1380::9]")}  # fmt: skip
    # first/last seen: the failures that set the backoffs, 55 and 5 minutes ago
    now = datetime.now(UTC)
    first, last = (datetime.fromisoformat(connect[k]) for k in ("first_seen", "last_seen"))
    assert abs(first - (now - timedelta(minutes=55))) < timedelta(minutes=1)
    assert abs(last - (now - timedelta(minutes=5))) < timedelta(minutes=1)
    assert backoffs[UNAVAILABLE]["first_seen"] is None  # no interval recorded: time unknown
    assert data["backoff"]["groups"] == 3 and data["backoff"]["machines"] == 4


def test_history_groups_within_the_window(client):
    data = failures(client)
    assert data["since"] == "24h" and data["window_seconds"] == 86400
    history = groups_of(data, "history")
    summary = {
        s: (g["machines"], g["events"], g["processes"], g["deleted_machines"])
        for s, g in history.items()
    }
    assert summary == {
        CONNECT_SIG: (3, 4, ["ShepherdAgentStart"], 1),  # IPv4 and IPv6, a deleted machine
        HEARTBEATS: (2, 2, ["ShepherdRecovery"], 0),
        HEARTBEAT_1: (1, 1, ["ShepherdAccess"], 0),
        "": (1, 1, ["ShepherdAccess"], 0),  # no cause recorded
    }
    assert data["history"]["error"] is None and data["history"]["events"] == 8
    two_days = groups_of(failures(client, "&since=2d"), "history")
    assert two_days["old failure <n>"]["machines"] == 1 and len(two_days) == 5


def test_group_ids_are_stable_across_processes_and_name_source_window_and_signature(
    client, fleet_dsn
):
    first = failures(client)
    with webug_client(fleet_dsn) as other:  # another process: nothing shared
        second = failures(other)
    assert [g["id"] for g in first["groups"]] == [g["id"] for g in second["groups"]]
    for g in first["groups"]:
        digest = hashlib.md5(g["signature"].encode()).hexdigest()[:12]
        window = "-24h" if g["source"] == "history" else ""
        assert g["id"] == f"{g['source']}{window}-{digest}"
        assert g["url"] == f"/?failure={g['id']}"
    week = groups_of(failures(client, "&since=7d"), "history")
    assert all(g["id"].startswith("history-7d-") for g in week.values())


def test_the_failure_filter_lists_exactly_the_groups_machines(client, fleet_dsn):
    expected = {
        ("backoff", CONNECT_SIG): {mid(1), mid(2), mid(3)},
        ("backoff", "while dialing SSH: dial tcp <ip>:<n>: i/o timeout"): {mid(2)},
        ("history", CONNECT_SIG): {mid(1), mid(6)},  # mid(99) is deleted: not listable
        ("history", HEARTBEATS): {mid(7), mid(8)},
        ("history", ""): {mid(4)},
    }
    groups = {(g["source"], g["signature"]): g for g in failures(client)["groups"]}
    for key, machines in expected.items():
        assert listed(client, groups[key]["url"]) == machines, key
    # In a process that never read the groups (a restart, another replica), the same link
    # reads them once and lists the same machines.
    with webug_client(fleet_dsn) as fresh:
        url = groups[("history", CONNECT_SIG)]["url"]
        assert listed(fresh, url) == {mid(1), mid(6)}
        response = fresh.get(url + "&format=json").json()
        assert response["total"] == 2 and response["failure"]["signature"] == CONNECT_SIG
        assert fresh.app.state.history_reads.reads == 1


def test_watch_these_watches_exactly_a_groups_machines(client):
    group = groups_of(failures(client), "history")[HEARTBEATS]
    response = client.get("/watch/filtered?failure=" + group["id"], follow_redirects=False)
    assert response.status_code == 303
    watched = parse_qs(urlsplit(response.headers["location"]).query)["ids"][0]
    assert {UUID(i) for i in re.split("[ ,]+", watched)} == {mid(7), mid(8)}


def test_failure_filter_page_says_what_it_lists(client):
    group = groups_of(failures(client), "history")[HEARTBEATS]
    page = client.get(group["url"])
    assert page.status_code == 200
    assert 'id="failure-filter"' in page.text and html.escape(HEARTBEATS) in page.text
    assert "failure: " + group["id"] in page.text  # its chip
    gone = client.get("/?failure=history-24h-000000000000&format=json").json()
    assert gone["total"] == 0 and gone["failure"]["signature"] is None


def test_the_page_renders_groups_with_links(client):
    page = client.get("/failures")
    assert page.status_code == 200
    data = failures(client)
    for g in data["groups"]:
        assert f'id="g-{g["id"]}"' in page.text
        assert f'href="{g["url"]}"' in page.text
    assert "(no cause recorded)" in page.text
    assert 'href="/failures"' in client.get("/overview").text  # linked from the overview
    assert 'href="/failures">failures</a>' in page.text  # and from the header


NOT_A_WINDOW = "is not a window: a whole number of minutes, hours or days, such as 30m"
WINDOW_RANGE = "the window must be between 1m and 30d"


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("since=junk", NOT_A_WINDOW),
        ("since=0h", NOT_A_WINDOW),
        ("since=31d", WINDOW_RANGE),
        ("since=1w", NOT_A_WINDOW),
        ("since=-1h", NOT_A_WINDOW),
        ("since=" + "9" * 20, "since: String should have at most 16 characters"),
    ],
)
def test_bad_windows_are_400(client, query, says):
    response = client.get(f"/failures?{query}")
    assert response.status_code == 400, (query, response.status_code)
    assert says in response.text


FAILURE_PATTERN = "failure: String should match pattern"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("junk", FAILURE_PATTERN),
        ("history-24h-xyz", FAILURE_PATTERN),
        ("history-99d-0123456789ab", WINDOW_RANGE),
        ("backoff-0123456789abc", FAILURE_PATTERN),
    ],
)
def test_bad_failure_filters_are_400(client, value, says):
    response = client.get(f"/?failure={value}")
    assert response.status_code == 400 and says in response.text


def test_windows_are_spelled_canonically(client):
    assert failures(client, "&since=1d")["since"] == "24h"
    assert failures(client, "&since=2880m")["since"] == "2d"
    assert failures(client, "&since=90m")["since"] == "90m"


def test_a_history_read_over_its_budget_says_so_and_is_not_retried_at_once(fleet_dsn):
    with webug_client(fleet_dsn, history_timeout_ms=300) as client:
        reads = client.app.state.history_reads
        with TableLock(fleet_dsn, "work_history"):
            data = failures(client)
            page = client.get("/failures")
            chart = client.get("/activity", headers={"HX-Request": "true"})
        assert "budget of 0.3 s" in data["history"]["error"]
        assert groups_of(data, "backoff") and not groups_of(data, "history")  # backoffs stay
        assert 'id="history-error"' in page.text and "WEBUG_HISTORY_TIMEOUT_MS" in page.text
        assert chart.status_code == 200 and 'id="activity-error"' in chart.text
        assert reads.reads == 2  # the failure groups once (not again for the page), the chart
        assert failures(client)["history"]["error"]  # remembered for the interval
        reads.clear()
        assert failures(client)["history"]["error"] is None  # the lock is gone


def test_an_expired_read_still_resolves_the_list_and_polls_never_read_history(fleet_dsn):
    with webug_client(fleet_dsn, history_cache_seconds=0) as client:  # every read is stale
        reads = client.app.state.history_reads
        group = groups_of(failures(client), "history")[HEARTBEATS]
        assert reads.reads == 1
        assert listed(client, group["url"]) == {mid(7), mid(8)}
        for _ in range(3):  # the live table's polls
            poll = client.get(group["url"], headers={"HX-Request": "true"})
            assert poll.status_code == 200 and str(mid(7)) in poll.text
        assert reads.reads == 1  # the list shows the group as last read; only /failures reads
        failures(client)
        assert reads.reads == 2
