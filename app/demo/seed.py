"""Seed a migrated, empty BMDB with a realistic fleet for the demo.

Rows are generated in Python from one `random.Random` (so a seed reproduces a
fleet) and written with COPY, one table at a time, in a single transaction:
100k machines take seconds, not minutes.

The data is internally consistent the way a real BMDB is: every current work
row has a `Started` history event inside its session's lifetime, every backoff
has a `Failed` event carrying its cause at `until - last_interval_seconds`,
earlier attempts are spaced by the exponential backoff they caused, and a few
deleted machines survive only in `work_history`.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

import asyncpg

from app.demo import protobuf_wire as pw

BACKOFF_INITIAL_SECONDS = 60
BACKOFF_MAX_SECONDS = 86_400
SESSION_INTERVAL_SECONDS = 60

COMPONENTS = ("shepherd-equinix", "shepherd-lumen", "bmdb-agent-api", "bmdb-stats", "installer")
SHEPHERD_OF = {"Equinix": "shepherd-equinix", "Lumen": "shepherd-lumen"}

COLUMNS = {
    "machines": ("machine_id", "machine_created_at"),
    "sessions": (
        "session_id",
        "session_component_name",
        "session_runtime_info",
        "session_created_at",
        "session_interval_seconds",
        "session_deadline",
    ),
    "machine_provided": (
        "machine_id",
        "provider",
        "provider_id",
        "provider_reservation_id",
        "provider_ip_address",
        "provider_location",
        "provider_status",
    ),
    "machine_agent_started": ("machine_id", "agent_started_at", "agent_public_key"),
    "machine_agent_heartbeat": ("machine_id", "agent_heartbeat_at"),
    "machine_hardware_report": ("machine_id", "hardware_report_raw"),
    "machine_os_installation_request": ("machine_id", "generation", "os_installation_request_raw"),
    "machine_os_installation_report": (
        "machine_id",
        "generation",
        "os_installation_result",
        "os_installation_report_raw",
    ),
    "work": ("machine_id", "session_id", "process"),
    "work_backoff": ("machine_id", "process", "until", "cause", "last_interval_seconds"),
    "work_history": ("machine_id", "process", "event", "timestamp", "failed_cause"),
}

LOCATIONS = {
    "Equinix": ("fr5", "ny7", "da11", "sv15", "am6", "dc13", "sg1"),
    "Lumen": ("den1", "chi2", "dal3", "phx1"),
    "None": ("lab-rack3", "lab-rack7"),
}
IP_PREFIXES = {
    "Equinix": ("147.75", "145.40", "139.178", "136.144"),
    "Lumen": ("8.30", "65.154"),
    "None": ("10.42",),
}
COMPONENT_VERSIONS = ("v0.13.2", "v0.14.0", "v0.14.1")


class _Weighted:
    """A weighted choice with precomputed cumulative weights (random.choices
    recomputes them on every call, which shows when seeding 100k machines)."""

    def __init__(self, *pairs: tuple):
        self.values = [v for v, _ in pairs]
        self.cum = list(itertools.accumulate(w for _, w in pairs))

    def __call__(self, rng: random.Random):
        return self.values[bisect.bisect(self.cum, rng.random() * self.cum[-1])]


PROVIDERS = _Weighted(("Equinix", 82), ("Lumen", 15), ("None", 3))
STATUSES = _Weighted(
    ("Running", 76),
    ("Provisioning", 6),
    ("Missing", 4),
    ("Stopped", 4),
    ("ProvisioningFailedPermanent", 3),
    ("Unknown", 3),
    (None, 4),
)
AGENT_RETRIES = _Weighted((0, 85), (1, 10), (2, 5))
BACKOFF_FAILURES = _Weighted(*zip(range(1, 9), (30, 20, 15, 10, 10, 7, 5, 3), strict=True))
ACCESS_RUNS = _Weighted((0, 50), (1, 25), (2, 15), (3, 10))
ACCESS_OUTCOMES = _Weighted(("Finished", 75), ("Canceled", 10), ("retried", 15))


def backoff_interval(failures: int) -> int:
    """Backoff period set by the n-th consecutive failure (exponential, capped)."""
    return min(BACKOFF_INITIAL_SECONDS << min(failures - 1, 30), BACKOFF_MAX_SECONDS)


@dataclass
class SeedSummary:
    machines: int = 0
    provided: int = 0
    agent_started: int = 0
    agent_heartbeats: int = 0
    hardware_reports: int = 0
    os_installation_requests: int = 0
    os_installation_reports: int = 0
    sessions: int = 0
    work: int = 0
    backoffs: int = 0
    history: int = 0
    deleted_machines: int = 0

    def total_rows(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self)) - self.deleted_machines


SUMMARY_FIELDS = {
    "machines": "machines",
    "machine_provided": "provided",
    "machine_agent_started": "agent_started",
    "machine_agent_heartbeat": "agent_heartbeats",
    "machine_hardware_report": "hardware_reports",
    "machine_os_installation_request": "os_installation_requests",
    "machine_os_installation_report": "os_installation_reports",
    "sessions": "sessions",
    "work": "work",
    "work_backoff": "backoffs",
    "work_history": "history",
}


# Failure causes, by process. Each takes (rng, machine ip) and returns text.
def _cause_agent_start(rng: random.Random, ip: str) -> str:
    return rng.choice(
        (
            f"while dialing SSH: dial tcp {ip}:22: connect: connection refused",
            f"while dialing SSH: dial tcp {ip}:22: i/o timeout",
            "while dialing SSH: ssh: handshake failed: ssh: unable to authenticate, "
            "attempted methods [none publickey], no supported methods remain",
            'while uploading agent: sftp: "Permission denied" (SSH_FX_PERMISSION_DENIED)',
            "agent did not start:\nProcess exited with status 2\nstderr:\n"
            "  panic: open /dev/tpmrm0: no such file or directory\n\n"
            "  goroutine 1 [running]:\n  main.main()\n"
            "  \t/build/cloud/agent/main.go:87 +0x3a5",
            "while fetching device: GET https://api.equinix.com/metal/v1/devices/…: "
            "503 Service Unavailable",
        )
    )


def _cause_recovery(rng: random.Random, ip: str) -> str:
    return rng.choice(
        (
            "while rebooting device: POST https://api.equinix.com/metal/v1/devices/…/actions: "
            "422 Unprocessable Entity: Device is not in a state that allows this action",
            f"agent still unreachable after reboot: dial tcp {ip}:22: no route to host",
            "while reinstalling: provider reports device state 'failed'\n"
            "last provider event: hardware.failure (Memory DIMM B2 uncorrectable ECC)",
            "Lumen API: 504 Gateway Timeout",
        )
    )


def _cause_access(rng: random.Random, ip: str) -> str:
    return rng.choice(
        (
            "while listing reservations: GET https://api.equinix.com/metal/v1/projects/…/"
            "hardware-reservations: 429 Too Many Requests",
            "provider no longer knows this device (404 Not Found)",
            "context deadline exceeded",
        )
    )


CAUSES: dict[str, Callable[[random.Random, str], str]] = {
    "ShepherdAgentStart": _cause_agent_start,
    "ShepherdRecovery": _cause_recovery,
    "ShepherdAccess": _cause_access,
}
INSTALL_ERRORS = (
    "failed to open root device /dev/nvme0n1: no such file or directory",
    "while writing ESP: short write on /dev/sda1",
    "bundle download failed: GET https://artifacts.example.com/…: 404 Not Found",
)


@dataclass
class _Session:
    id: uuid.UUID
    created: datetime
    deadline: datetime


class _FleetBuilder:
    """Accumulates the rows of every table; one instance per seed run."""

    def __init__(self, rng: random.Random, now: datetime):
        self.rng = rng
        self.now = now
        self.rows: dict[str, list[tuple]] = {table: [] for table in COLUMNS}
        self.alive: dict[str, list[_Session]] = {}
        self.expired: dict[str, list[_Session]] = {}
        # Guarantee a few of each interesting case even in tiny fleets.
        self.wanted = {"stale_work": 3, "live_work": 3, "active_backoff": 3, "expired_backoff": 3}
        self.serial = rng.randrange(100_000)

    def flush(self) -> dict[str, list[tuple]]:
        """Hand over the rows generated so far and start new batches."""
        rows, self.rows = self.rows, {table: [] for table in COLUMNS}
        return rows

    # --- helpers -------------------------------------------------------------

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def ago(self, lo: float, hi: float) -> datetime:
        return self.now - timedelta(seconds=self.rng.uniform(lo, hi))

    def history(self, mid, process, event, ts, cause=None) -> None:
        self.rows["work_history"].append((mid, process, event, ts, cause))

    def want(self, case: str, probability: float) -> bool:
        """Whether to create a case; the first few are forced (see done())."""
        return self.wanted[case] > 0 or self.rng.random() < probability

    def done(self, case: str, when: datetime | None) -> datetime | None:
        if when is not None:
            self.wanted[case] = max(0, self.wanted[case] - 1)
        return when

    def attempts(self, end: datetime, n: int) -> list[tuple[datetime, datetime]]:
        """(start, end) of n consecutive attempts, the last ending at `end`.

        Attempt a starts once the backoff set by failure a-1 has expired.
        """
        spans, stop = [], end
        for a in range(n, 0, -1):
            start = stop - timedelta(seconds=self.rng.uniform(4, 180))
            spans.append((start, stop))
            if a > 1:
                stop = start - timedelta(seconds=backoff_interval(a - 1) + self.rng.uniform(1, 90))
        return spans[::-1]

    def fit_attempts(
        self, n: int, end_of: Callable[[int], datetime | None], lower: datetime
    ) -> list[tuple[datetime, datetime]]:
        """The longest series of at most n attempts, ending at end_of(count),
        that starts after lower; [] if not even one fits."""
        for count in range(n, 0, -1):
            end = end_of(count)
            if end is not None:
                spans = self.attempts(end, count)
                if spans[0][0] >= lower:
                    return spans
        return []

    # --- sessions --------------------------------------------------------------

    def sessions(self, machines: int) -> None:
        for component in COMPONENTS:
            alive = [self.session(component, alive=True) for _ in range(self.rng.randint(1, 3))]
            expired = [self.session(component, alive=False) for _ in range(4 + machines // 5000)]
            self.alive[component], self.expired[component] = alive, expired

    def session(self, component: str, *, alive: bool) -> _Session:
        if alive:
            created = self.ago(900, 5 * 86400)
            deadline = self.now + timedelta(seconds=self.rng.uniform(31, SESSION_INTERVAL_SECONDS))
        else:
            deadline = self.ago(180, 14 * 86400)
            created = deadline - timedelta(seconds=self.rng.uniform(1800, 10 * 86400))
        s = _Session(self.uuid(), created, deadline)
        host = f"{component}-{self.rng.getrandbits(32):08x}-{self.rng.getrandbits(20):05x}"
        info = f"host={host} pid=1 version={self.rng.choice(COMPONENT_VERSIONS)}"
        self.rows["sessions"].append(
            (s.id, component, info, s.created, SESSION_INTERVAL_SECONDS, s.deadline)
        )
        return s

    # --- machines ----------------------------------------------------------------

    def machine(self) -> None:
        rng = self.rng
        mid = self.uuid()
        created = self.ago(3600, 180 * 86400)
        self.rows["machines"].append((mid, created))
        if rng.random() >= 0.9:
            return  # created, but not (yet) provided: shows up as a bare machine
        provider = PROVIDERS(rng)
        status = STATUSES(rng)
        ip = self.provided(mid, provider, status)
        agent_at, heartbeat_at = self.agent(mid, created, status, ip)
        story_begins = self.now  # of the current work or backoff, if any
        if provider in SHEPHERD_OF:
            # The process a shepherd would run next, from when it could have.
            lower = created + timedelta(hours=1)
            if agent_at is None:
                process = "ShepherdAgentStart"
            elif heartbeat_at and heartbeat_at > self.now - timedelta(minutes=5):
                process = "ShepherdAccess"
            else:  # Recovery once the agent went silent (or never checked in)
                process, lower = "ShepherdRecovery", heartbeat_at or agent_at
            if lower < self.now - timedelta(minutes=10):
                story_begins = self.work_or_backoff(mid, process, provider, ip, lower)
        # Shepherd processes don't overlap on a machine: older runs end before.
        self.access_history(mid, created, story_begins)

    def provided(self, mid, provider: str, status: str | None) -> str:
        rng = self.rng
        self.serial += 1
        provider_id, reservation = f"{provider.lower()}-{self.serial:06d}", None
        if provider == "Equinix":
            provider_id = str(self.uuid())
            if rng.random() < 0.55:
                reservation = str(self.uuid())
        elif provider == "Lumen" and rng.random() < 0.3:
            reservation = f"RES-{rng.randrange(10**7):07d}"
        ip = f"{rng.choice(IP_PREFIXES[provider])}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        no_ip = status in ("Provisioning", "ProvisioningFailedPermanent") or rng.random() < 0.02
        location = rng.choice(LOCATIONS[provider]) if rng.random() < 0.98 else None
        self.rows["machine_provided"].append(
            (mid, provider, provider_id, reservation, None if no_ip else ip, location, status)
        )
        return ip

    def agent(self, mid, created: datetime, status: str | None, ip: str):
        """Agent tags; returns (agent_started_at, agent_heartbeat_at), either may be None."""
        rng = self.rng
        chance = {"Running": 0.93, "Stopped": 0.6, "Missing": 0.6, "Unknown": 0.6}.get(status, 0)
        if rng.random() >= chance:
            return None, None
        started = min(created + timedelta(seconds=rng.uniform(180, 2400)), self.ago(60, 120))
        self.rows["machine_agent_started"].append((mid, started, rng.randbytes(32)))
        # The shepherd's AgentStart work sets the tag, then finishes.
        finished = started + timedelta(seconds=rng.uniform(0.05, 2))
        retries = AGENT_RETRIES(rng)
        spans = self.fit_attempts(retries + 1, lambda _: finished, created)
        for i, (begin, end) in enumerate(spans):
            failed = i < len(spans) - 1
            self.history(mid, "ShepherdAgentStart", "Started", begin)
            self.history(
                mid,
                "ShepherdAgentStart",
                "Failed" if failed else "Finished",
                end,
                _cause_agent_start(rng, ip) if failed else None,
            )
        if rng.random() < 0.03:
            return started, None  # agent started but never got through to the API
        if status == "Running" and rng.random() < 0.95:
            heartbeat = max(self.ago(0, 50), started)
        else:
            heartbeat = max(self.ago(3600, 72 * 3600), started)
        self.rows["machine_agent_heartbeat"].append((mid, heartbeat))
        if rng.random() < 0.92:
            self.rows["machine_hardware_report"].append((mid, pw.hardware_report(rng)))
            self.installation(mid)
        return started, heartbeat

    def installation(self, mid) -> None:
        rng = self.rng
        if rng.random() >= 0.35:
            return
        generation = rng.choice((1, 1, 1, 2, 3))
        self.rows["machine_os_installation_request"].append(
            (mid, generation, pw.os_installation_request(rng, generation))
        )
        if rng.random() >= 0.75:
            return  # requested, not reported yet
        reported = generation - 1 if generation > 1 and rng.random() < 0.1 else generation
        error = rng.choice(INSTALL_ERRORS) if rng.random() < 0.12 else None
        self.rows["machine_os_installation_report"].append(
            (
                mid,
                reported,
                "Error" if error else "Success",
                pw.os_installation_report(reported, error),
            )
        )

    # --- work, backoff, history -----------------------------------------------------

    def work_or_backoff(self, mid, process: str, provider: str, ip: str, lower: datetime):
        """Maybe give the machine current work or a backoff for process; returns
        the earliest history timestamp used (or now)."""
        component, rng = SHEPHERD_OF[provider], self.rng
        when = None
        if self.want("stale_work", 0.006):
            # Work held by a session that died: started while that session lived.
            session = rng.choice(self.expired[component])
            if max(lower, session.created) < session.deadline:
                when = self.done(
                    "stale_work",
                    self.work(mid, process, session, max(lower, session.created), session.deadline),
                )
        if when is None and self.want("live_work", 0.004):
            session = rng.choice(self.alive[component])
            when = self.done(
                "live_work",
                self.work(
                    mid, process, session, max(lower, session.created, self.ago(1, 1200)), self.now
                ),
            )
        if when is None and self.want("active_backoff", 0.025):
            when = self.done("active_backoff", self.backoff(mid, process, ip, lower, active=True))
        if when is None and self.want("expired_backoff", 0.025):
            when = self.done("expired_backoff", self.backoff(mid, process, ip, lower, active=False))
        return when or self.now

    def work(self, mid, process, session: _Session, begin: datetime, end: datetime) -> datetime:
        started = begin + (end - begin) * self.rng.random()
        self.rows["work"].append((mid, session.id, process))
        self.history(mid, process, "Started", started)
        return started

    def backoff(
        self, mid, process: str, ip: str, lower: datetime, *, active: bool
    ) -> datetime | None:
        rng = self.rng
        room = (self.now - lower).total_seconds()

        def last_failure(failures: int) -> datetime | None:
            interval = backoff_interval(failures)
            if active:  # the last failure happened less than one interval ago
                return self.ago(0, min(interval, room))
            if room < interval + 120:
                return None
            return self.ago(interval + 60, min(interval + 20 * 86400, room))

        wanted = BACKOFF_FAILURES(rng)
        spans = self.fit_attempts(wanted, last_failure, lower)
        if not spans:
            return None
        last = spans[-1][1]
        interval = backoff_interval(len(spans))
        cause = CAUSES[process](rng, ip)
        legacy = not active and rng.random() < 0.05  # rows from before exponential backoff
        self.rows["work_backoff"].append(
            (mid, process, last + timedelta(seconds=interval), cause, None if legacy else interval)
        )
        for i, (begin, end) in enumerate(spans):
            self.history(mid, process, "Started", begin)
            self.history(
                mid,
                process,
                "Failed",
                end,
                cause if i == len(spans) - 1 else CAUSES[process](rng, ip),
            )
        return spans[0][0]

    def access_history(self, mid, created: datetime, until: datetime) -> None:
        """Older, finished ShepherdAccess runs, all ending before `until`."""
        rng = self.rng
        t = created + timedelta(hours=1)
        for _ in range(ACCESS_RUNS(rng)):
            t += timedelta(seconds=rng.uniform(600, 20 * 86400))
            outcome = ACCESS_OUTCOMES(rng)
            # A failure retried successfully leaves no backoff: success deletes it.
            spans = self.attempts(t, 2 if outcome == "retried" else 1)
            if spans[0][0] < created or t >= until - timedelta(minutes=1):
                return
            for i, (begin, end) in enumerate(spans):
                failed = i < len(spans) - 1
                event = (
                    "Failed" if failed else ("Canceled" if outcome == "Canceled" else "Finished")
                )
                self.history(mid, "ShepherdAccess", "Started", begin)
                self.history(
                    mid, "ShepherdAccess", event, end, _cause_access(rng, "") if failed else None
                )

    def deleted_machine(self) -> None:
        """History of a machine that was deleted since: it outlives the machine."""
        mid = self.uuid()
        t = self.ago(30 * 86400, 200 * 86400)
        for process, event in (
            ("ShepherdAgentStart", "Finished"),
            ("ShepherdAccess", "Finished"),
            ("ShepherdRecovery", "Failed"),
            ("ShepherdAccess", "Canceled"),
        ):
            t += timedelta(seconds=self.rng.uniform(300, 5 * 86400))
            self.history(mid, process, "Started", t)
            self.history(
                mid,
                process,
                event,
                t + timedelta(seconds=self.rng.uniform(3, 200)),
                _cause_recovery(self.rng, "") if event == "Failed" else None,
            )


def fleet_chunks(
    machines: int,
    *,
    rng_seed: int | None = None,
    now: datetime | None = None,
    chunk_size: int = 5000,
) -> Iterator[dict[str, list[tuple]]]:
    """Generate the fleet as successive row batches (table -> records in COLUMNS
    order), parents before children within each batch; deterministic per rng_seed."""
    builder = _FleetBuilder(random.Random(rng_seed), now or datetime.now(UTC))
    builder.sessions(machines)
    for start in range(0, max(machines, 1), chunk_size):
        for _ in range(min(chunk_size, machines - start)):
            builder.machine()
        if start + chunk_size >= machines:
            for _ in range(max(3, machines // 200)):
                builder.deleted_machine()
        yield builder.flush()


def build_fleet(
    machines: int, *, rng_seed: int | None = None, now: datetime | None = None
) -> dict[str, list[tuple]]:
    """All rows of a fleet at once, without touching a database (tests, benchmarks)."""
    rows: dict[str, list[tuple]] = {table: [] for table in COLUMNS}
    for chunk in fleet_chunks(machines, rng_seed=rng_seed, now=now):
        for table, records in chunk.items():
            rows[table] += records
    return rows


async def copy_rows(conn: asyncpg.Connection, rows: dict[str, list[tuple]]) -> None:
    for table, records in rows.items():
        if records:
            await conn.copy_records_to_table(table, records=records, columns=COLUMNS[table])


def summarize(rows: dict[str, list[tuple]], summary: SeedSummary | None = None) -> SeedSummary:
    """Add the row counts of a batch to summary (a new one by default)."""
    summary = summary or SeedSummary()
    for table, attribute in SUMMARY_FIELDS.items():
        setattr(summary, attribute, getattr(summary, attribute) + len(rows[table]))
    # A machine's history is generated in the same batch as the machine.
    summary.deleted_machines += len(
        {r[0] for r in rows["work_history"]} - {r[0] for r in rows["machines"]}
    )
    return summary


async def seed_fleet(
    dsn: str, machines: int = 500, *, rng_seed: int | None = None, now: datetime | None = None
) -> SeedSummary:
    """Insert a fleet of `machines` into the (migrated, empty) BMDB at dsn.

    `now` anchors all generated times; leave it None so that sessions meant to
    be alive are alive according to the database clock. All or nothing: one
    transaction.
    """
    chunks = fleet_chunks(machines, rng_seed=rng_seed, now=now)
    summary = SeedSummary()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            rows = await asyncio.to_thread(next, chunks, None)  # keep the event loop free
            while rows is not None:
                # Generate the next batch in a thread while this one is COPYed:
                # the server's share of COPY (constraints, indexes) then runs on
                # another core instead of after Python's share.
                upcoming = asyncio.create_task(asyncio.to_thread(next, chunks, None))
                try:
                    await copy_rows(conn, rows)
                finally:
                    next_rows = await upcoming  # never leave the generator running
                summarize(rows, summary)
                rows = next_rows
        # Fresh statistics, or the planner takes a 100k-row table for empty.
        for table in COLUMNS:
            await conn.execute(f"ANALYZE {table}")  # constant identifiers
    finally:
        await conn.close()
    return summary
