"""The fleet gauges: their names, labels and meaning, from one collection's numbers.

`bmdb_stats_*` and `bmdb_hwstats_region_*` are upstream's (its exporter, scruffy), with
their names, labels, meaning and quirks (docs/operating.md, "Fleet gauges"); `webug_fleet_*`
are webug's own. docs/operating.md has the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.bmdb.fleet_stats import ENDING_WITHIN, UPSTREAM_SPECS, FleetStats
from app.bmdb.workflows import SHEPHERD_PROCESSES
from app.fleet.hardware import HardwareStats

SIGNATURE_LABEL_MAX = 120  # characters of a failure signature kept in its label


@dataclass
class Family:
    """One gauge: its samples as (label values, value)."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)

    def add(self, value: float, *label_values: str) -> Family:
        self.samples.append((label_values, value))
        return self

    def to_json(self) -> list[Any]:
        return [self.name, self.help, list(self.labels), [[list(k), v] for k, v in self.samples]]

    @classmethod
    def from_json(cls, data: list[Any]) -> Family:
        name, help_text, labels, samples = data
        return cls(name, help_text, tuple(labels), [(tuple(k), v) for k, v in samples])


def _gauge(name: str, help_text: str, value: float | None) -> list[Family]:
    return [] if value is None else [Family(name, help_text).add(value)]


def upstream_families(stats: FleetStats) -> list[Family]:
    """`bmdb_stats_*`, as upstream counted them (quirks included)."""
    start, recovery = (stats.upstream_eligible.get(s.name) for s in UPSTREAM_SPECS)
    families = [
        *_gauge("bmdb_stats_machines", "rows of machines", stats.machines),
        *_gauge("bmdb_stats_machines_provided", "rows of machine_provided", stats.provided),
        *_gauge(
            "bmdb_stats_machines_heartbeating",
            "machines with a Provided tag and a heartbeat newer than 10 minutes",
            stats.heartbeating if stats.provided is not None else None,
        ),
        *_gauge(
            "bmdb_stats_machines_pending_installation",
            "machines with Provided and an installation request whose generation IS"
            " DISTINCT FROM the report's",
            stats.pending_installation,
        ),
        *_gauge(
            "bmdb_stats_machines_installed",
            "machines with Provided, a request and a report of the same generation",
            stats.installed if stats.pending_installation is not None else None,
        ),
        *_gauge(
            "bmdb_stats_machines_pending_agent_start",
            "machines the AgentStart workflow selects, over all providers",
            start,
        ),
        *_gauge(
            "bmdb_stats_machines_pending_agent_recovery",
            "machines the AgentRecovery workflow selects, over all providers, comparing"
            " the installation with any report (not only a Success one), as upstream did",
            recovery,
        ),
    ]
    work = Family(
        "bmdb_stats_active_work", "every work row per process, stale ones too (upstream's"
        " quirk: see webug_fleet_work_running and webug_fleet_stale_work)", ("process",),
    )  # fmt: skip
    backoffs = Family(
        "bmdb_stats_active_backoffs", "every work_backoff row per process, expired ones too"
        " (upstream's quirk: see webug_fleet_backoffs_active)", ("process",),
    )  # fmt: skip
    for process, counts in stats.processes.items():
        # Upstream always exported the shepherd processes, others when they had rows.
        if process in SHEPHERD_PROCESSES or counts.work:
            work.add(counts.work, process)
        if process in SHEPHERD_PROCESSES or counts.backoffs:
            backoffs.add(counts.backoffs, process)
    return [*families, work, backoffs]


def hardware_families(hardware: HardwareStats) -> list[Family]:
    """`bmdb_hwstats_region_*` per (provider, location), and what was skipped."""
    labels = ("provider", "location")
    nodes = Family("bmdb_hwstats_region_nodes", "machines with a parsed hardware report", labels)
    ram = Family(
        "bmdb_hwstats_region_ram_bytes", "sum of the reports' memory_installed_bytes", labels
    )
    threads = Family(
        "bmdb_hwstats_region_cpu_threads", "sum of the reports' CPUs' hardware_threads", labels
    )
    for (provider, location), region in sorted(hardware.regions.items()):
        nodes.add(region.nodes, provider, location)
        ram.add(region.ram_bytes, provider, location)
        threads.add(region.cpu_threads, provider, location)
    return [
        nodes, ram, threads,
        Family("webug_fleet_hardware_reports_unparseable",
               "hardware reports of provided machines that are not protobuf (skipped)")
        .add(hardware.unparseable),
        Family("webug_fleet_hardware_reports_without_location",
               "parsed hardware reports of machines without a provider_location (skipped)")
        .add(hardware.without_location),
    ]  # fmt: skip


def webug_families(stats: FleetStats) -> list[Family]:
    """webug's own gauges."""
    workflows = Family(
        "webug_fleet_workflow_machines", "machines per workflow and state (docs/workflows.md)",
        ("workflow", "state"),
    )  # fmt: skip
    for name, states in stats.workflows.items():
        for state, n in states.items():
            workflows.add(n, name, state)
    stuck = Family(
        "webug_fleet_stuck_machines", "machines some workflow applies to, blocked with no end"
        " in sight (/?stuck=1, docs/workflows.md), by the first blocker that holds:"
        " stale_work, failed_installation, no_workflow_acts", ("blocker",),
    )  # fmt: skip
    for blocker, n in sorted(stats.stuck.items()):
        stuck.add(n, blocker)
    oldest = None
    if stats.oldest_stuck_created is not None:
        oldest = max((stats.now - stats.oldest_stuck_created).total_seconds(), 0.0)
    by_process = [
        Family("webug_fleet_work_running", "work held by an alive session", ("process",)),
        Family("webug_fleet_stale_work", "work held by an expired session", ("process",)),
        Family("webug_fleet_backoffs_active", "backoffs with until > now()", ("process",)),
    ]
    ending = Family(
        "webug_fleet_backoffs_ending", "active backoffs that end within 15 minutes or 1 hour",
        ("process", "within"),
    )  # fmt: skip
    for process, c in sorted(stats.processes.items()):
        for family, value in zip(
            by_process, (c.work - c.stale_work, c.stale_work, c.active_backoffs), strict=True
        ):
            family.add(value, process)
        for within in ENDING_WITHIN:
            ending.add(c.ending[within], process, within)
    failures = Family(
        "webug_fleet_failure_group_machines",
        "machines of the largest failure groups of active backoffs (/failures; /?failure=<group>"
        " lists them)", ("group", "signature"),
    )  # fmt: skip
    for g in stats.failures.groups if stats.failures is not None else ():
        signature = " ".join(g.signature.split())[:SIGNATURE_LABEL_MAX]  # on one line
        failures.add(g.machines, f"backoff-{g.digest}", signature)
    return [
        workflows, stuck,
        *_gauge("webug_fleet_stuck_oldest_machine_age_seconds",
                "now minus machine_created_at of the oldest stuck machine", oldest),
        *by_process, ending, failures,
    ]  # fmt: skip


def families(stats: FleetStats, hardware: HardwareStats | None) -> list[Family]:
    return [
        *upstream_families(stats),
        *(hardware_families(hardware) if hardware is not None else ()),
        *webug_families(stats),
    ]
