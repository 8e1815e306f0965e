"""Workflows: which component would pick a machine up, and what keeps it from doing so.

The upstream components select the machines they work on with plain queries (their
rules, in words: docs/workflows.md, "The upstream rules"). Each workflow here is ONE
definition, data rather than code (`WorkflowSpec`: required and absent tags, no work of
some processes, no active backoff, an unfulfilled installation, a silent agent; more
from WEBUG_WORKFLOWS).
Compiled against the reflected schema, a definition becomes conditions, each a formula
over probes of tables reflection knows (app/bmdb/formulas.py), and the same conditions
give:

- a machine's document: whether each condition holds (`document_sql`, and
  `page_conditions` for a page of them); app/model/workflow_status.py explains the
  state with the machine's own rows as evidence;
- the list's filters `workflow=&workflow_state=` (`state_condition`: the states'
  formulas, written as joins), and with the facts of `Fleet` the state tabs and what
  "stuck" means (app/bmdb/machine_states.py);
- the facet and overview counts (`counts_sql`: each origin's rows joined once to the
  fleet, every state of every workflow and every fact counted in one pass).

A machine's state is decided by the roles of the conditions that fail, in this order
(`DECISION`): the first role with a failing condition decides.

    running     work of the workflow's process is held by an alive session
    not_needed  there is nothing to do: a required tag is missing or an absent one is
                there, the installation is fulfilled, the agent heartbeats
    blocked     work of a process it waits for exists (alive, or stale: no end in sight)
    waiting     only conditions that end at known times fail: an active backoff, the
                minutes an agent that never heartbeated is given
    eligible    every condition holds: the component takes it on its next pass

`eligible` is exactly the upstream selection: the heartbeat rule is split into "the agent
is silent" (need) and "its grace time is over" (bounded), whose conjunction is the rule.
A definition naming a table, column or enum value the schema lacks is `unknown` for that
schema version (`CompiledWorkflow.missing` says what): never an error.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from app.bmdb import tables
from app.bmdb.formulas import (
    FALSE,
    TRUE,
    Formula,
    Found,
    Joined,
    Probe,
    all_of,
    any_of,
    correlated,
    negate,
)
from app.bmdb.reflection import PROCESS_ENUM, Schema, quote_ident
from app.bmdb.sql import SqlWhere, json_array

STATES = ("not_needed", "eligible", "running", "waiting", "blocked", "unknown")
# The first role with a failing condition decides the state; none failing: eligible.
DECISION = (
    ("running", "running"),
    ("not_needed", "need"),
    ("blocked", "unbounded"),
    ("waiting", "bounded"),
)
# States in which a workflow will act on the machine (now, or at a known time): a machine
# with none of them may be stuck (app/bmdb/machine_states.py).
MOVING = ("eligible", "running", "waiting")
APPLIES = (*MOVING, "blocked")  # the states of machines a workflow concerns
SHEPHERD_PROCESSES = ("ShepherdAccess", "ShepherdAgentStart", "ShepherdRecovery")
# "Heartbeating" as the upstream statistics count it: a heartbeat within this window.
HEARTBEAT_WINDOW = timedelta(minutes=10)
# Labels are bound as the enum itself: the planner then estimates from the column's
# statistics (a label reflection does not know makes the workflow unknown, not a cast error).
PROCESS = quote_ident(PROCESS_ENUM)


# --- definitions ------------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Installation(_Spec):
    """The OS installation is not fulfilled: (no request, or, when `request` is
    "required", never that) the request's generation IS DISTINCT FROM the generation of
    the installation report (of a report whose result is `report_result`, when given;
    no such report counts as NULL)."""

    request: Literal["optional", "required"] = "optional"
    report_result: str | None = None


class Heartbeat(_Spec):
    """The agent is silent: either it has no heartbeat and agent_started_at is more than
    `never_after_minutes` ago, or its agent_heartbeat_at is more than
    `silent_after_minutes` ago."""

    silent_after_minutes: float = Field(gt=0, le=100_000)
    never_after_minutes: float = Field(gt=0, le=100_000)


class WorkflowSpec(_Spec):
    """One workflow: a machine is selected when ALL of its conditions hold."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
    component: str = Field(max_length=200, description="who selects the machines")
    process: str | None = Field(
        None, description="the process it runs: its work held by an alive session is running"
    )
    has: tuple[str, ...] = Field((), description="tags the machine has (names or tables)")
    lacks: tuple[str, ...] = Field((), description="tags it does not have")
    installation: Installation | None = None
    heartbeat: Heartbeat | None = None
    no_work_of: tuple[str, ...] = Field(
        (), description="processes of which the machine has no work (alive or stale)"
    )
    no_backoff_of: tuple[str, ...] = Field(
        (), description="processes with no active backoff (until > now()) on the machine"
    )


# The upstream components' rules as of schema version 1698288577 (docs/workflows.md, "The
# upstream rules").
BUILTIN: tuple[WorkflowSpec, ...] = (
    WorkflowSpec(
        name="AgentStart",
        component="shepherd initializer",
        process="ShepherdAgentStart",
        has=("Provided",),
        lacks=("AgentStarted",),
        installation=Installation(request="optional"),
        no_work_of=SHEPHERD_PROCESSES,
        no_backoff_of=("ShepherdAgentStart",),
    ),
    WorkflowSpec(
        name="AgentRecovery",
        component="shepherd recoverer",
        process="ShepherdRecovery",
        has=("Provided", "AgentStarted"),
        installation=Installation(request="optional", report_result="Success"),
        heartbeat=Heartbeat(silent_after_minutes=10, never_after_minutes=30),
        no_work_of=SHEPHERD_PROCESSES,
        no_backoff_of=("ShepherdRecovery",),
    ),
    WorkflowSpec(
        name="OSInstallation",
        component="BMaaS server, delivered to the agent on its next heartbeat",
        installation=Installation(request="required"),
    ),
)


class WorkflowFile(_Spec):
    workflows: tuple[WorkflowSpec, ...]


def load_file(path: Path) -> tuple[WorkflowSpec, ...]:
    """The workflows of an operator's file (JSON, TOML, or YAML when PyYAML is installed):
    `{"workflows": [{"name": ..., ...}]}`. Raises ValueError saying what is wrong."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ValueError(f"{path}: YAML needs PyYAML; write JSON or TOML") from None
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ValueError(f"{path} is not valid {suffix.lstrip('.') or 'JSON'}: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    try:
        specs = TypeAdapter(WorkflowFile).validate_python(data).workflows
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"{path}: {problems}") from None
    names = [s.name for s in specs]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"{path}: workflow {twice[0]!r} is defined twice")
    return specs


def with_file(path: Path | None) -> tuple[WorkflowSpec, ...]:
    """The built-in workflows plus the file's; a file workflow named like a built-in one
    replaces it (an upstream rule that changed)."""
    if path is None:
        return BUILTIN
    added = load_file(path)
    names = {s.name for s in added}
    return tuple(s for s in BUILTIN if s.name not in names) + added


# --- conditions ---------------------------------------------------------------------------


def _rows_of(table: str, pred: str = "TRUE", *values: object) -> Probe:
    """A probe of one tag table (aliased `t`: probes of the same table share an origin)."""
    return Probe(f"{quote_ident(table)} t", "t.machine_id", pred, values)


Kind = Literal["running", "has", "lacks", "installation", "silent", "due", "no_work", "no_backoff"]
_ROLE: dict[str, str] = {
    "running": "running",
    "has": "need",
    "lacks": "need",
    "installation": "need",
    "silent": "need",
    "no_work": "unbounded",
    "due": "bounded",
    "no_backoff": "bounded",
}


@dataclass(frozen=True)
class Condition:
    """One thing that must hold for the component to select the machine."""

    kind: Kind
    label: str  # what must hold, in words: "has Provided", "no active ShepherdRecovery backoff"
    holds: Formula
    tag: str | None = None  # the tag it is about (tag names as the machine's document has them)
    processes: tuple[str, ...] = ()
    minutes: float | None = None  # a heartbeat threshold

    @property
    def role(self) -> str:
        return _ROLE[self.kind]


@dataclass(frozen=True)
class CompiledWorkflow:
    spec: WorkflowSpec
    conditions: tuple[Condition, ...] = ()
    missing: tuple[str, ...] = ()  # what this schema lacks: the workflow is unknown
    # The machines it applies to, whatever their state: the tags it needs and, when it
    # needs one, an installation request (answered or not).
    scope: Formula = TRUE

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def known(self) -> bool:
        return not self.missing

    def holds(self, role: str) -> Formula:
        return all_of(*(c.holds for c in self.conditions if c.role == role))

    @property
    def states(self) -> tuple[str, ...]:
        """The states it can be in: a role without conditions decides none."""
        if not self.known:
            return ("unknown",)
        deciding = {state for state, role in DECISION if self.holds(role) != TRUE}
        return tuple(s for s in STATES if s in deciding or s == "eligible")

    def in_states(self, states: tuple[str, ...]) -> Formula:
        """The machine's state is one of `states`: the decision list read backwards, so
        each state adds "its role fails, or ..." and each other state "... and its role
        holds": a conjunction wherever the states allow one. What decides comes first
        (PostgreSQL joins in the order written): a blocked machine is one with that work
        (a few hundred rows), then with the tags, not the tags then the work."""
        formula = TRUE if "eligible" in states else FALSE
        for state, role in reversed(DECISION):
            holds = self.holds(role)
            fails_here = state in states
            formula = any_of(negate(holds), formula) if fails_here else all_of(formula, holds)
        return formula


def decide(workflow: CompiledWorkflow, holds: list[bool]) -> str:
    """The state, from whether each of its conditions holds (in `conditions` order)."""
    if not workflow.known:
        return "unknown"
    failing = {c.role for c, ok in zip(workflow.conditions, holds, strict=True) if not ok}
    return next((state for state, role in DECISION if role in failing), "eligible")


# The facts about a machine that the counts carry besides its workflows' states, in the
# order they do (`counts_sql`); app/bmdb/machine_states.py reads tabs and "stuck" off them.
FACTS = (
    "heartbeating", "installed", "managed", "working", "stale_work", "in_backoff",
    "installation_succeeded", "installation_failed",
)  # fmt: skip


@dataclass(frozen=True)
class Fleet:
    """The workflows compiled for one schema, and the facts about a machine that decide
    with them which state tabs it is in and whether it is stuck (FACTS; each FALSE when
    the schema lacks its tables)."""

    workflows: tuple[CompiledWorkflow, ...]
    heartbeating: Formula = FALSE  # Provided, agent_heartbeat_at within HEARTBEAT_WINDOW
    installed: Formula = FALSE  # Provided, a request and a report of equal generations
    managed: Formula = FALSE  # some known workflow applies to it (its scope)
    working: Formula = FALSE  # work held by an alive session, of any process
    stale_work: Formula = FALSE  # work held by an expired session
    in_backoff: Formula = FALSE  # an active backoff (until > now()), of any process
    # The request answered by a report of its generation whose result is Success / is not.
    installation_succeeded: Formula = FALSE
    installation_failed: Formula = FALSE

    @cached_property
    def known(self) -> tuple[CompiledWorkflow, ...]:
        return tuple(w for w in self.workflows if w.known)

    def get(self, name: str) -> CompiledWorkflow | None:
        return next((w for w in self.workflows if w.name == name), None)

    @property
    def facts(self) -> tuple[Formula, ...]:
        return tuple(getattr(self, name) for name in FACTS)


def compiled(schema: Schema, specs: tuple[WorkflowSpec, ...] = BUILTIN) -> Fleet:
    """`specs` compiled against `schema`, once per schema and set of specs."""
    return schema.derived(("workflows", specs), lambda: _compile_fleet(schema, specs))


def _compile_fleet(schema: Schema, specs: tuple[WorkflowSpec, ...]) -> Fleet:
    workflows = tuple(compile_workflow(s, schema) for s in specs)
    facts: dict[str, Formula] = {
        "managed": any_of(*(w.scope for w in workflows if w.known)),
    }
    if schema.has_field(tables.PROVIDED):
        provided = Found(_rows_of(tables.PROVIDED))
        if schema.has_field(tables.HEARTBEAT, "agent_heartbeat_at"):
            facts["heartbeating"] = all_of(provided, Found(_fresh_heartbeat(HEARTBEAT_WINDOW)))
        if schema.has_field(tables.INSTALLATION_REQUEST, "generation") and schema.has_field(
            tables.INSTALLATION_REPORT, "generation"
        ):
            facts["installed"] = all_of(provided, Found(_installation_probe(fulfilled=True)))
    if {"work", "sessions"} <= schema.tables:
        facts["working"] = Found(_work_probe("s.session_deadline > now()"))
        facts["stale_work"] = Found(_work_probe("s.session_deadline <= now()"))
    if "work_backoff" in schema.tables:
        facts["in_backoff"] = Found(Probe(
            "work_backoff b", "b.machine_id", "b.until > now()", unique=False
        ))  # fmt: skip
    report = schema.tag(tables.INSTALLATION_REPORT)
    result = report.field("os_installation_result") if report is not None else None
    if (
        result is not None and "Success" in result.enum_values
        and schema.has_field(tables.INSTALLATION_REQUEST, "generation")
        and schema.has_field(tables.INSTALLATION_REPORT, "generation")
    ):  # fmt: skip
        # Probes of the same rows as the workflows' "fulfilled" one: counted in one join.
        answered = _installation_probe(fulfilled=True)
        success = f"rep.os_installation_result = {{0}}::{quote_ident(result.udt_name)}"
        for name, outcome in (("installation_succeeded", ""), ("installation_failed", "NOT ")):
            facts[name] = Found(dataclasses.replace(
                answered, pred=f"{answered.pred} AND {outcome}coalesce({success}, false)",
                values=("Success",),
            ))  # fmt: skip
    return Fleet(workflows, **facts)


def _work_probe(session_pred: str) -> Probe:
    """Work of any process whose session's deadline is as `session_pred` says (the same
    rows as the workflows' "running" probes: counted in one join)."""
    return Probe(
        "work w JOIN sessions s ON s.session_id = w.session_id", "w.machine_id",
        session_pred, unique=False,
    )  # fmt: skip


def _fresh_heartbeat(window: timedelta) -> Probe:
    return _rows_of(tables.HEARTBEAT, "t.agent_heartbeat_at > now() - {0}::interval", window)


def _installation_probe(*, fulfilled: bool, result: str | None = None, enum: str = "") -> Probe:
    """Requests whose generation is (not) that of the report (of this result)."""
    join, values = "", ()
    if result is not None:
        join, values = f" AND rep.os_installation_result = {{0}}::{enum}", (result,)
    return Probe(
        f"{tables.INSTALLATION_REQUEST} r LEFT JOIN {tables.INSTALLATION_REPORT} rep"
        f" ON rep.machine_id = r.machine_id{join}",
        "r.machine_id",
        f"r.generation IS {'NOT ' if fulfilled else ''}DISTINCT FROM rep.generation",
        source_values=values,
    )


def compile_workflow(spec: WorkflowSpec, schema: Schema) -> CompiledWorkflow:
    """The spec's conditions over this schema; unknown (with what is missing) when the
    schema lacks a table, column or enum value it names."""
    missing: list[str] = []
    conditions: list[Condition] = []
    scope: list[Formula] = []  # the machines it applies to

    def table(name: str) -> None:
        if name not in schema.tables:
            missing.append(f"table {name}")

    def processes(names: tuple[str, ...]) -> tuple[str, ...]:
        missing.extend(f"process {p}" for p in names if p not in schema.processes)
        return names

    def column(tag_table: str, name: str) -> None:
        if not schema.has_field(tag_table, name):
            missing.append(f"{tag_table}.{name}")

    if spec.process is not None:
        table("work")
        table("sessions")
        running = Probe(
            "work w JOIN sessions s ON s.session_id = w.session_id", "w.machine_id",
            f"w.process = {{0}}::{PROCESS} AND s.session_deadline > now()",
            processes((spec.process,)), unique=False,  # work of other processes too
        )  # fmt: skip
        conditions.append(Condition(
            "running", f"{spec.process} is not running", Found(running, False),
            processes=(spec.process,),
        ))  # fmt: skip
    for names, present in ((spec.has, True), (spec.lacks, False)):
        for name in names:
            tag = schema.tag(name)
            if tag is None:
                missing.append(f"tag {name}")
                continue
            conditions.append(Condition(
                "has" if present else "lacks", f"{'has' if present else 'no'} {tag.name}",
                Found(_rows_of(tag.table), present), tag=tag.name,
            ))  # fmt: skip
            if present:
                scope.append(conditions[-1].holds)
    if (rule := spec.installation) is not None:
        conditions.append(_installation(rule, schema, column, missing))
        if rule.request == "required":
            scope.append(Found(_rows_of(tables.INSTALLATION_REQUEST)))
    if (beat := spec.heartbeat) is not None:
        column(tables.HEARTBEAT, "agent_heartbeat_at")
        column(tables.AGENT_STARTED, "agent_started_at")
        silent, never = beat.silent_after_minutes, beat.never_after_minutes
        conditions.append(Condition(
            "silent", f"no heartbeat in the last {silent:g} min",
            Found(_fresh_heartbeat(timedelta(minutes=silent)), False), minutes=silent,
        ))  # fmt: skip
        # With "silent", exactly the rule: "no heartbeat and started more than N min ago, or
        # a heartbeat more than M min old" = silent AND (a heartbeat, or started N min ago).
        started_long_ago = _rows_of(
            tables.AGENT_STARTED, "t.agent_started_at <= now() - {0}::interval",
            timedelta(minutes=never),
        )  # fmt: skip
        conditions.append(Condition(
            "due", f"a heartbeat, or agent started more than {never:g} min ago",
            any_of(Found(_rows_of(tables.HEARTBEAT)), Found(started_long_ago)), minutes=never,
        ))  # fmt: skip
    if spec.no_work_of:
        table("work")
        work = Probe("work w", "w.machine_id", f"w.process = ANY({{0}}::{PROCESS}[])",
                     (processes(spec.no_work_of),), unique=False)  # fmt: skip
        conditions.append(Condition(
            "no_work", f"no work of {', '.join(spec.no_work_of)}", Found(work, False),
            processes=spec.no_work_of,
        ))  # fmt: skip
    if spec.no_backoff_of:
        table("work_backoff")
        backoff = Probe(
            "work_backoff b", "b.machine_id",
            f"b.process = ANY({{0}}::{PROCESS}[]) AND b.until > now()",
            (processes(spec.no_backoff_of),), unique=False,
        )  # fmt: skip
        conditions.append(Condition(
            "no_backoff", f"no active backoff of {', '.join(spec.no_backoff_of)}",
            Found(backoff, False), processes=spec.no_backoff_of,
        ))  # fmt: skip
    if missing:
        return CompiledWorkflow(spec, missing=tuple(dict.fromkeys(missing)))
    return CompiledWorkflow(spec, tuple(conditions), scope=all_of(*scope))


def _installation(rule: Installation, schema: Schema, column, missing: list[str]) -> Condition:
    column(tables.INSTALLATION_REQUEST, "generation")
    column(tables.INSTALLATION_REPORT, "generation")
    enum, by = "", "a report"
    if rule.report_result is not None:
        column(tables.INSTALLATION_REPORT, "os_installation_result")
        tag = schema.tag(tables.INSTALLATION_REPORT)
        result = tag.field("os_installation_result") if tag is not None else None
        if result is not None and rule.report_result not in result.enum_values:
            missing.append(f"os_installation_result {rule.report_result}")
        enum = quote_ident(result.udt_name) if result is not None else ""
        by = f"a {rule.report_result} report"
    if rule.request == "required":
        pending = _installation_probe(fulfilled=False, result=rule.report_result, enum=enum)
        return Condition(
            "installation", f"an installation request not answered by {by}", Found(pending)
        )
    fulfilled = _installation_probe(fulfilled=True, result=rule.report_result, enum=enum)
    return Condition(
        "installation", f"no installation request answered by {by}", Found(fulfilled, False)
    )


# --- SQL --------------------------------------------------------------------------------


def document_sql(fleet: Fleet, params: SqlWhere, m: str = "m") -> str:
    """SQL: for each known workflow of `fleet`, whether each of its conditions holds for
    machine `m` (a JSON array of arrays of booleans, in `conditions` order). Changes
    exactly when a condition flips, so a polled document stays the same until a state
    does."""
    return json_array([
        json_array([correlated(c.holds, params, m, joins=False) for c in w.conditions])
        for w in fleet.known
    ])  # fmt: skip


def state_condition(
    workflow: CompiledWorkflow, states: tuple[str, ...], params: SqlWhere, m: str = "m"
) -> str:
    """SQL: machine `m`'s state for `workflow` is one of `states` (as joins)."""
    if not workflow.known:
        return "TRUE" if "unknown" in states else "FALSE"
    return correlated(workflow.in_states(states), params, m, joins=True)


def page_conditions(fleet: Fleet, params: SqlWhere, only: str) -> tuple[str, str, str]:
    """`document_sql` for a page of machines `m` (`machine_id = {only}`), and whether
    each of FACTS holds (the row's state tabs and blocker): (the two JSON expressions,
    the joins they read)."""
    conditions = [[c.holds for c in w.conditions] for w in fleet.known]
    joined = Joined([*(f for fs in conditions for f in fs), *fleet.facts], params, only=only)
    return (
        json_array([json_array([joined.sql(f) for f in fs]) for fs in conditions]),
        json_array([joined.sql(f) for f in fleet.facts]),
        joined.joins,
    )


def counts_sql(fleet: Fleet, where: SqlWhere, machines: str = "machines") -> str:
    """SQL of a JSON array of [[each known workflow's state (its index in STATES)...,
    each of FACTS (1 or 0)], machines] (`decode_groups` reads them), over the machines
    `where` selects from the relation `machines` (its values are bound into `where`: pass
    a copy that the statement's parameters come from). One pass over the fleet: each
    origin joined once (`Joined`), every state a CASE over the joined columns."""
    formulas = [[w.holds(role) for _, role in DECISION] for w in fleet.known]
    joined = Joined([*(f for fs in formulas for f in fs), *fleet.facts], where)
    sql, joins = joined.sql, joined.joins
    # Each state as its index in STATES, and the machines grouped by one key, the array
    # of them all (a few dozen combinations, summed up by `decode_groups`' readers): one
    # key is hashed; five were sorted (PostgreSQL guessed a group per machine), and a
    # FILTER per state would evaluate the CASEs again for each.
    states = [
        "CASE" + "".join(f" WHEN NOT {sql(h)} THEN {STATES.index(state)}" for (state, _), h in
                         zip(DECISION, holds, strict=True) if h != TRUE)
        + f" ELSE {STATES.index('eligible')} END"
        for holds in formulas
    ]  # fmt: skip
    facts = [
        "0" if f == FALSE else f"CASE WHEN {sql(f)} THEN 1 ELSE 0 END" for f in fleet.facts
    ]
    return (
        "(SELECT coalesce(json_agg(json_build_array(g.k, g.n)), '[]'::json) FROM"
        f" (SELECT ARRAY[{', '.join([*states, *facts])}] AS k, count(*) AS n"
        f" FROM {machines} m{joins} WHERE {where.sql} GROUP BY 1) g)"
    )


@dataclass(frozen=True)
class Group:
    """Machines alike in every counted respect: their known workflows' states and FACTS."""

    states: tuple[str, ...]  # per known workflow, in `Fleet.known` order
    facts: dict[str, bool]
    machines: int


def decode_groups(fleet: Fleet, document: list) -> list[Group]:
    """`counts_sql`'s groups."""
    n_states = len(fleet.known)
    return [
        Group(
            tuple(STATES[code] for code in key[:n_states]),
            dict(zip(FACTS, map(bool, key[n_states:]), strict=True)),
            n,
        )
        for key, n in document
    ]
