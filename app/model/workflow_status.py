"""Why a machine is (not) picked up: each workflow's state, explained.

The BMDB says which of a workflow's conditions hold (app/bmdb/workflows.py,
`document_sql`); the state follows from them (`decide`). The evidence comes from the
machine's own rows in the same document (tags, work with its session, backoffs), so
the explanation is of one snapshot: the backoff with its cause and end, the work and
whether its session is alive, the tag and its time, the heartbeat against its
threshold. Texts carry no relative times: the page renders `at`, `until` and
`eligible_at` as times that tick in the browser, so the document (and an unchanged
poll's 304) holds until a state changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from app.bmdb import tables
from app.bmdb.reflection import display_name
from app.bmdb.workflows import CompiledWorkflow, Condition, Fleet, decide
from app.model.entities import Blocker, ConditionState, Machine, Work, WorkflowStatus
from app.render import urls

# The tags evidence comes from, by the names the machine's document has them.
REQUEST = display_name(tables.INSTALLATION_REQUEST)
REPORT = display_name(tables.INSTALLATION_REPORT)
STARTED, HEARTBEAT = display_name(tables.AGENT_STARTED), display_name(tables.HEARTBEAT)


def statuses(fleet: Fleet, holds: list[list[bool]], machine: Machine) -> list[WorkflowStatus]:
    """Every workflow of `fleet` for `machine`, from its document's condition results
    (one list per known workflow, as `document_sql` wrote them)."""
    known = iter(holds)
    return [diagnose(w, next(known) if w.known else [], machine) for w in fleet.workflows]


def diagnose(workflow: CompiledWorkflow, holds: list[bool], machine: Machine) -> WorkflowStatus:
    spec = workflow.spec
    state = decide(workflow, holds)
    failing = [c for c, ok in zip(workflow.conditions, holds, strict=True) if not ok]
    evidence = {c: _evidence(c, machine) for c in failing}
    blockers = list(dict.fromkeys(b for c in failing for b in evidence[c]))  # once each
    eligible_at = change = None
    # When every failing condition ends at a known time, the latest end is when it
    # becomes eligible (a fresh heartbeat too: if no other comes).
    if state in ("waiting", "not_needed") and all(
        evidence[c] and all(isinstance(b.until, datetime) for b in evidence[c]) for c in failing
    ):
        latest = max(blockers, key=lambda b: b.until)
        eligible_at, change = latest.until, latest.change
    return WorkflowStatus(
        workflow=spec.name,
        process=spec.process,
        component=spec.component,
        state=state,
        eligible_at=eligible_at,
        change=change,
        why=_why(workflow, state, blockers, machine, failing),
        blockers=blockers,
        conditions=[
            ConditionState(label=c.label, holds=ok)
            for c, ok in zip(workflow.conditions, holds, strict=True)
            if c.kind != "running"
        ],
        missing=list(workflow.missing),
    )


def _why(
    workflow: CompiledWorkflow,
    state: str,
    blockers: list[Blocker],
    machine: Machine,
    failing: list[Condition],
) -> str:
    spec = workflow.spec
    if state == "unknown":
        return "unknown for this schema version: it lacks " + ", ".join(workflow.missing)
    if state == "eligible":
        return f"the {spec.component} takes it on its next pass"
    if state == "running":
        return f"{spec.process} is running on it"
    if state == "not_needed":
        first = blockers[0].detail if blockers else "its conditions do not apply"
        return f"nothing to do: {first}"
    if state == "blocked":
        if any(b.kind == "stale_work" for b in blockers):
            return "blocked until the expired session's work is garbage-collected"
        waited_for = {p for c in failing if c.kind == "no_work" for p in c.processes}
        running = sorted({w.process for w in machine.work if w.process in waited_for})
        return f"blocked while {', '.join(running) or 'other work'} runs"
    return "waiting for things that end at known times"


def _evidence(condition: Condition, machine: Machine) -> list[Blocker]:
    """The machine's rows that make `condition` fail (it does, by the BMDB's word)."""
    tags, machine_id = machine.tags, machine.machine_id
    kind = condition.kind
    if kind == "has":
        return [Blocker(
            kind="tag", label=f"no {condition.tag}", detail=f"no {condition.tag} tag",
            url=urls.machines(lacks=[condition.tag]),
        )]  # fmt: skip
    if kind == "lacks":
        return [Blocker(
            kind="tag", label=f"has {condition.tag}", detail=f"has {condition.tag}",
            at=_first_time(tags.get(condition.tag) or {}),
            url=urls.machine_tag(machine_id, condition.tag),
        )]  # fmt: skip
    if kind == "installation":
        return [_installation(tags, machine_id)]
    if kind == "silent":
        at = (tags.get(HEARTBEAT) or {}).get("agent_heartbeat_at")
        return [Blocker(
            kind="heartbeat", label="agent heartbeats",
            detail="the agent heartbeats: its last heartbeat is under"
            f" {condition.minutes:g} min old",
            at=at, until=_plus(at, condition.minutes),
            change=f"the heartbeat is {condition.minutes:g} min old",
            url=urls.machine_tag(machine_id, HEARTBEAT),
        )]  # fmt: skip
    if kind == "due":
        at = (tags.get(STARTED) or {}).get("agent_started_at")
        if at is None:
            return [Blocker(
                kind="heartbeat", label="agent never started",
                detail="no heartbeat, and no agent start to count the minutes from",
            )]  # fmt: skip
        return [Blocker(
            kind="heartbeat", label=f"agent started < {condition.minutes:g} min ago",
            detail=f"the agent never heartbeated and started under {condition.minutes:g} min ago",
            at=at, until=_plus(at, condition.minutes),
            change=f"the agent has been silent {condition.minutes:g} min since it started",
            url=urls.machine_tag(machine_id, STARTED),
        )]  # fmt: skip
    if kind in ("no_work", "running"):
        alive_only = kind == "running"
        return [
            _work(w) for w in machine.work
            if w.process in condition.processes and (w.session_alive or not alive_only)
        ]  # fmt: skip
    return [  # no_backoff
        Blocker(
            kind="backoff", label=f"{b.process} backoff", detail=f"{b.process} backoff: {b.cause}",
            at=b.started, until=b.until, change=f"the {b.process} backoff ends",
            url=urls.machine_history(machine_id, process=b.process),
        )
        for b in machine.active_backoffs
        if b.process in condition.processes
    ]  # fmt: skip


def _work(w: Work) -> Blocker:
    holder = w.component or "a session"
    if w.stale:
        return Blocker(
            kind="stale_work", label=f"stale {w.process} work",
            detail=f"{w.process} work held by an expired session of {holder}: nothing runs,"
            " and nothing starts until the session is garbage-collected",
            at=w.session_deadline, url=w.session_url,
        )  # fmt: skip
    return Blocker(
        kind="work", label=f"{w.process} runs",
        detail=f"{w.process} work held by an alive session of {holder}",
        url=w.session_url,
    )  # fmt: skip


def _installation(tags: dict, machine_id) -> Blocker:
    request, report = tags.get(REQUEST), tags.get(REPORT)
    if request is None:
        return Blocker(
            kind="installation", label="no installation request",
            detail="no OS installation request",
            url=urls.machines(lacks=[REQUEST]),
        )  # fmt: skip
    answer, result = "", None
    if report is not None:
        result = report.get("os_installation_result")
        answer = f" by a report of generation {report.get('generation')}" + (
            f" ({result})" if result is not None else ""
        )
    failed = result is not None and result != "Success"
    return Blocker(
        kind="installation", label="installation failed" if failed else "installation fulfilled",
        detail=f"the OS installation of generation {request.get('generation')} is fulfilled"
        f"{answer}",
        url=urls.machine_tag(machine_id, REPORT if report is not None else REQUEST),
    )


def _first_time(values: dict) -> datetime | None:
    return next((v for v in values.values() if isinstance(v, datetime)), None)


def _plus(at: object, minutes: float | None) -> datetime | None:
    if not isinstance(at, datetime) or minutes is None:
        return None
    try:
        return at + timedelta(minutes=minutes)
    except OverflowError:
        return None
