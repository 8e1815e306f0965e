"""The machine list's filters: parsed from the query string, turned into SQL.

The URL is the state: every filter is a query parameter, so a filtered view can be
pasted into chat. The enum filters (provider, status, work, backoff) take several values,
any of which matches (`status=Running&status=Missing`, a chip each); has/lacks take
several tags, all of which must hold; any other filter takes one value
(app/http/parameters.py refuses two). An enum filter's values are labels of its enum, as
reflected: another is a 400 that lists them (NotInSchema, after one more reflection: the
enum may have grown since).

Conditions are EXISTS subqueries on the machine (`m`), so they combine freely and never
multiply rows; values, enum labels included, are always bound parameters. A condition
names no column of `m` but `m.machine_id`: the list's keyed orders (app/bmdb/ordering.py)
put the sort key's own table in `m`'s place.

Each condition costs the planner a join, so the conditions are bounded: a tag given
twice is one condition, at most MAX_TAG_FILTERS tags at once, and the conditions are
written with the rare ones first, because on PostgreSQL the session keeps that order
(`join_collapse_limit`, app/bmdb/connection.py) instead of searching every order of a dozen joins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from app.bmdb import machine_states, reflection, workflows
from app.bmdb.failures import FAILURE_ID_PATTERN
from app.bmdb.reflection import NotInSchema, Schema, TagType, quote_ident
from app.bmdb.sql import SqlWhere  # where it lives; the list's filters build one
from app.bmdb.tables import HEARTBEAT, INSTALLATION_REPORT, INSTALLATION_REQUEST, PROVIDED
from app.bmdb.workflows import HEARTBEAT_WINDOW, Fleet

NULL_STATUS = "NULL"  # how the query string names "provider_status IS NULL"

# heartbeat=recent|stale, on the AgentHeartbeat tag alone (a machine without one is neither;
# "agent started but never heartbeated" is has=AgentStarted&lacks=AgentHeartbeat):
#   recent: agent_heartbeat_at > now() - HEARTBEAT_WINDOW
#   stale:  agent_heartbeat_at <= now() - HEARTBEAT_WINDOW (10 minutes, app/bmdb/workflows.py)
HEARTBEAT_STATES = ("recent", "stale")

# installation=pending|complete|failed, for machines with an OSInstallationRequest (a
# report without a request is none of them). The report answers the request when its
# generation is the same or newer (reports are deliberately not tied to the request's
# generation; an older one answers an earlier request):
#   pending:  no report answers the request (no report, or report.generation < request's)
#   complete: the answering report's os_installation_result is Success
#   failed:   the answering report's os_installation_result is Error
# The three partition the machines with a request.
INSTALLATION_STATES = ("pending", "complete", "failed")
_INSTALLATION_RESULT = {"complete": "Success", "failed": "Error"}
_HEX_PREFIX = re.compile(r"^[0-9a-fA-F-]{1,36}$")
# has= and lacks= together, after repeats are merged: each is a join to plan, and planning
# grows faster than their number (a BMDB with dozens of tag types must not allow dozens).
MAX_TAG_FILTERS = 16

# The list's orders (app/bmdb/ordering.py), `-` before one for descending.
SORT_KEYS = ("id", "created", "backoff", "heartbeat")
DEFAULT_SORT = "id"

# text= searches tag columns of these types (as text), besides backoff causes and the
# runtime info of the sessions holding a machine's work. Enums are not text (they have
# their facets), blobs neither.
TEXT_UDTS = frozenset({"text", "varchar", "bpchar", "inet", "cidr", "json", "jsonb"})
_PLAIN_TEXT_UDTS = frozenset({"text", "varchar", "bpchar"})


class FilterError(ValueError):
    """A filter value that cannot mean anything (unknown tag, bad prefix): a 400."""




def _no_nul(text: str | None) -> str | None:
    # PostgreSQL text cannot hold one: a value with it would fail the statement (a 500).
    if text is not None and "\x00" in text:
        raise ValueError("must not contain a NUL character")
    return text


def _one_or_more(value: object) -> object:
    # A link builder may give one label (urls.machines(provider="Lumen")).
    return (value,) if isinstance(value, str) else value


Label = Annotated[str | None, Field(max_length=200), AfterValidator(_no_nul)]
TagName = Annotated[str, Field(max_length=200), AfterValidator(_no_nul)]
TagNames = Annotated[tuple[TagName, ...], Field(max_length=50)]
# An enum filter's labels: any of them (OR).
Labels = Annotated[
    tuple[TagName, ...], Field(max_length=50), BeforeValidator(_one_or_more)
]


class MachineFilters(BaseModel):
    """The machine list's filters: each field is a query parameter (the list's handler
    reads them as one model), and `build_where` turns each into one SQL condition. A new
    filter is a field here and its condition there."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    provider: Labels = Field((), description="provider (repeatable: any of them)")
    status: Labels = Field(
        (), description=f"provider_status ({NULL_STATUS}: none; repeatable: any of them)"
    )
    location: Label = None
    has: TagNames = Field((), description="tag names the machine has (repeatable)")
    lacks: TagNames = Field((), description="tag names it lacks (repeatable)")
    work: Labels = Field(
        (), description="process with work on the machine (repeatable: any of them)"
    )
    backoff: Labels = Field((), description="active backoff process (repeatable: any of them)")
    stale: bool = Field(False, description="work held by an expired session")
    working: bool = Field(False, description="work held by an alive session")
    in_backoff: bool = Field(False, description="an active backoff, of any process")
    heartbeat: Literal[HEARTBEAT_STATES] | None = Field(  # type: ignore[valid-type]
        None, description="agent heartbeat within / older than 10 minutes"
    )
    installation: Literal[INSTALLATION_STATES] | None = Field(  # type: ignore[valid-type]
        None,
        description="OS installation request not yet answered by a report of the same or"
        " newer generation / answered with Success / answered with Error",
    )
    q: Label = Field(None, description="machine ID or provider ID prefix")
    text: Label = Field(
        None,
        description="case-insensitive text in backoff causes, the runtime info of sessions"
        " holding work, and text-like tag columns (wildcards are literal)",
    )
    failure: str | None = Field(
        None,
        pattern=f"^{FAILURE_ID_PATTERN}$",
        description="the machines of a failure group of /failures (its ID)",
    )
    workflow: Label = Field(
        None, description="a workflow (app/bmdb/workflows.py); alone: machines it applies to"
    )
    workflow_state: Literal[workflows.STATES] | None = Field(  # type: ignore[valid-type]
        None, description="with workflow: machines in this state for it"
    )
    stuck: bool = Field(
        False,
        description="some workflow applies, and it is blocked with no end in sight: no work"
        " alive, no workflow eligible, running or waiting; neither heartbeating (unless"
        " its installation failed) nor installed with Success (docs/workflows.md)",
    )
    blocker: Literal[machine_states.BLOCKER_NAMES] | None = Field(  # type: ignore[valid-type]
        None, description="stuck, and this is the first of its blockers that holds"
    )
    eligible: bool = Field(False, description="some workflow is eligible")
    unmanaged: bool = Field(
        False, description="no workflow applies (built in: no Provided tag, no installation"
        " request)",
    )  # fmt: skip
    # Not a filter (no chip, no condition): the order travels with the filters in every
    # link, so changing a filter keeps it.
    sort: str = Field(
        DEFAULT_SORT,
        pattern=rf"^-?({'|'.join(SORT_KEYS)})$",
        description=f"order: {', '.join(SORT_KEYS)}; '-' before one for descending",
    )

    @field_validator("has", "lacks", "provider", "status", "work", "backoff")
    @classmethod
    def _once(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        # A value given twice is one filter: kept once, in the URL, the chips and the SQL.
        return tuple(dict.fromkeys(names))

    @field_validator("q", "text")
    @classmethod
    def _empty_is_none(cls, text: str | None) -> str | None:
        return text or None

    def active(self) -> list[tuple[str, str]]:
        """(parameter, value) pairs of the filters in use, for chips and links."""
        pairs = []
        for name in type(self).model_fields:
            if name == "sort":
                continue
            value = getattr(self, name)
            if isinstance(value, tuple):
                pairs += [(name, v) for v in value]
            elif value is True:
                pairs.append((name, "1"))
            elif value:
                pairs.append((name, value))
        return pairs

    def query(self) -> list[tuple[str, str]]:
        """The filters in use and the order (unless the default): a link's parameters."""
        return self.active() + ([("sort", self.sort)] if self.sort != DEFAULT_SORT else [])

    def sorted_by(self, sort: str) -> MachineFilters:
        return self.model_copy(update={"sort": sort})

    def without(self, name: str, value: str) -> MachineFilters:
        current = getattr(self, name)
        if isinstance(current, tuple):
            return self.model_copy(update={name: tuple(v for v in current if v != value)})
        return self.model_copy(update={name: False if isinstance(current, bool) else None})

    def with_(self, name: str, value: str) -> MachineFilters:
        current = getattr(self, name)
        if isinstance(current, tuple):
            added = self.model_copy(
                update={name: current if value in current else (*current, value)}
            )
            opposite = _OPPOSITE.get(name)  # has=X replaces lacks=X: both would match nothing
            return added.without(opposite, value) if opposite else added
        return self.model_copy(update={name: True if isinstance(current, bool) else value})

    @property
    def tabs(self) -> tuple[str, ...]:
        """The state tabs selected (app/bmdb/machine_states.py); `blocker=` is stuck."""
        return tuple(
            t for t in machine_states.TAB_NAMES
            if getattr(self, t) or (t == "stuck" and self.blocker)
        )  # fmt: skip

    @property
    def tab(self) -> str | None:
        """The tab the list shows as current: "all" without one, None with several."""
        tabs = self.tabs
        return "all" if not tabs else tabs[0] if len(tabs) == 1 else None

    @property
    def workflow_view(self) -> bool:
        """A view that asks about workflows: its rows say each workflow's state."""
        return bool(self.workflow or self.stuck or self.blocker or self.eligible)

    def on_tab(self, name: str) -> MachineFilters:
        """These filters with the state tab `name` ("all": none) in place of any other,
        and `blocker=` (a blocker of the stuck tab) when given (with "stuck")."""
        cleared = {t: False for t in machine_states.TAB_NAMES} | {"blocker": None}
        if name != "all":
            cleared[name] = True
        return self.model_copy(update=cleared)

    def stuck_by(self, blocker: str) -> MachineFilters:
        return self.on_tab("stuck").model_copy(update={"blocker": blocker})


_OPPOSITE = {"has": "lacks", "lacks": "has"}


def uuid_prefix_range(prefix: str) -> tuple[UUID, UUID] | None:
    """The UUID range a hex prefix covers (an index range scan, not a LIKE on text)."""
    digits = prefix.replace("-", "").lower()
    if not digits or len(digits) > 32 or not _HEX_PREFIX.match(prefix):
        return None
    return UUID(digits.ljust(32, "0")), UUID(digits.ljust(32, "f"))


def like_escape(text: str) -> str:
    """`text` with LIKE's wildcards and escape character taken literally."""
    return re.sub(r"([\\%_])", r"\\\1", text)


def like_prefix(text: str) -> str:
    return like_escape(text) + "%"


def build_where(
    filters: MachineFilters,
    schema: Schema,
    failure_machines: Sequence[str] | None = None,
    fleet: Fleet | None = None,
) -> SqlWhere:
    """The filters' conditions, rare ones first: PostgreSQL joins them in this order.

    Work, backoffs and stale sessions concern few machines; provider fields, heartbeats,
    installations and tags concern many. Starting from the few keeps the plan cheap.

    `failure_machines`: the machine IDs of the group `filters.failure` names, as the page
    resolved them (app/model/failure_groups.py): a group is computed from a whole table (every
    active backoff, or a scan of work_history) and shared, never recomputed per statement.
    Workflow states, a dozen conditions each, come last; `fleet`: the workflows (the
    built-in ones when not given).
    """
    where = SqlWhere()
    if filters.q:  # a condition on `m` itself (an OR, not a join): anywhere is the same
        where.add(_id_or_provider_prefix(filters.q.strip(), where, schema))
    if filters.text:
        where.add(_text_condition(filters.text, where, schema))
    if filters.failure:  # on `m` too: an index condition on machines_pkey
        if failure_machines is None:
            raise FilterError(f"the failure group {filters.failure} was not resolved")
        where.add(f"m.machine_id = ANY({where.param(failure_machines)}::uuid[])")
    check_labels("work", filters.work, schema.processes)
    check_labels("backoff", filters.backoff, schema.processes)
    if filters.work:
        where.add(
            "EXISTS (SELECT 1 FROM work w WHERE w.machine_id = m.machine_id"
            f" AND {_text_in('w.process::text', filters.work, where)})"
        )
    if filters.backoff:
        where.add(
            "EXISTS (SELECT 1 FROM work_backoff b WHERE b.machine_id = m.machine_id"
            f" AND {_text_in('b.process::text', filters.backoff, where)} AND b.until > now())"
        )
    fleet = fleet or workflows.compiled(schema)
    for name in ("stale", "working", "in_backoff"):  # rare facts: early
        if getattr(filters, name):
            _tab(name, where, fleet)
    provided = _provided_conditions(filters, where, schema)
    if provided:
        if schema.tag(PROVIDED) is None:
            raise FilterError("this BMDB has no machine_provided tag table")
        where.add(
            f"EXISTS (SELECT 1 FROM machine_provided p WHERE p.machine_id = m.machine_id"
            f" AND {' AND '.join(provided)})"
        )
    if filters.heartbeat:
        where.add(_heartbeat_condition(filters.heartbeat, where, schema))
    if filters.installation:
        where.add(_installation_condition(filters.installation, where, schema))
    has, lacks = _tags(filters.has, schema), _tags(filters.lacks, schema)
    if len(has) + len(lacks) > MAX_TAG_FILTERS:
        raise FilterError(f"at most {MAX_TAG_FILTERS} has/lacks filters at once")
    if both := [t.name for t in has if t in lacks]:
        raise FilterError(
            f"has={both[0]} and lacks={both[0]} together match no machine: keep one of them"
        )
    for tags, negate in ((has, False), (lacks, True)):
        for tag in tags:
            where.add(
                f"{'NOT ' if negate else ''}EXISTS (SELECT 1 FROM {quote_ident(tag.table)} t"
                " WHERE t.machine_id = m.machine_id)"
            )
    if filters.workflow or filters.workflow_state:
        _workflow_conditions(filters, where, fleet)
    if filters.blocker:  # stuck, by one blocker
        where.add(machine_states.condition(machine_states.blocker(fleet, filters.blocker), where),
                  tab=True)  # fmt: skip
    for name in ("stuck", "eligible", "unmanaged"):
        if getattr(filters, name) and not (name == "stuck" and filters.blocker):
            _tab(name, where, fleet)
    return where


def _tab(name: str, where: SqlWhere, fleet: Fleet) -> None:
    where.add(machine_states.condition(machine_states.tab(fleet, name), where), tab=True)


def text_columns(schema: Schema) -> list[tuple[str, reflection.Field]]:
    """(tag table, field) of every tag column text= searches, by reflection."""
    return [
        (tag.table, f)
        for tag in schema.tag_types
        for f in tag.fields
        if f.udt_name in TEXT_UDTS and not f.is_enum and not f.is_array
    ]


def text_searched(schema: Schema) -> list[str]:
    """What text= searches, as the page names it: `work_backoff.cause`, `Provided.provider_id`."""
    return ["work_backoff.cause", "sessions.session_runtime_info (of held work)"] + [
        f"{reflection.display_name(table)}.{f.name}" for table, f in text_columns(schema)
    ]


def _text_condition(text: str, where: SqlWhere, schema: Schema) -> str:
    """The machine's backoff causes, its work's session runtime info or a text-like tag
    column contain `text`, in any letter case (LIKE of lower(), wildcards escaped).

    One IN over a UNION ALL: each source is scanned once and the machines hashed (a
    semi-join), where an OR of EXISTS would probe every source for every machine. Every
    value is lowered once and the pattern once (when the plan is made): ILIKE lowers both
    for every row in a UTF-8 database, twice the time (100k machine_provided rows, four
    columns: 240 ms against 580).
    """
    pattern = f"lower({where.param('%' + like_escape(text) + '%')})"

    def contains(column: str) -> str:
        return f"lower({column}) LIKE {pattern}"

    sources = [
        f"SELECT b.machine_id FROM work_backoff b WHERE {contains('b.cause')}",
        "SELECT w.machine_id FROM work w JOIN sessions s ON s.session_id = w.session_id"
        f" WHERE {contains('s.session_runtime_info')}",
    ]
    by_table: dict[str, list[str]] = {}
    for table, f in text_columns(schema):
        column = f"t.{quote_ident(f.name)}"
        if f.udt_name not in _PLAIN_TEXT_UDTS:
            column += "::text"
        by_table.setdefault(table, []).append(contains(column))
    sources += [
        f"SELECT t.machine_id FROM {quote_ident(table)} t WHERE {' OR '.join(matches)}"
        for table, matches in by_table.items()
    ]
    return f"m.machine_id IN ({' UNION ALL '.join(sources)})"


def _workflow_conditions(filters: MachineFilters, where: SqlWhere, fleet: Fleet) -> None:
    if filters.workflow_state and not filters.workflow:
        raise FilterError("workflow_state needs a workflow: workflow=<name>")
    if filters.workflow:
        workflow = fleet.get(filters.workflow)
        if workflow is None:
            names = ", ".join(w.name for w in fleet.workflows)
            raise FilterError(f"no workflow {filters.workflow!r}; there are {names}")
        # Alone: the machines it applies to, in whatever state.
        states = (filters.workflow_state,) if filters.workflow_state else workflows.APPLIES
        where.add(workflows.state_condition(workflow, states, where))


def _tags(names: tuple[str, ...], schema: Schema) -> list[TagType]:
    """The tag types named (by name or table), each once: at most one condition per tag."""
    tags: list[TagType] = []
    for name in names:
        tag = schema.tag(name)
        if tag is None:
            known = ", ".join(t.name for t in schema.tag_types) or "none"
            raise NotInSchema(f"no tag type {name!r} in this BMDB; its tag types: {known}")
        if tag not in tags:
            tags.append(tag)
    return tags


def _require(schema: Schema, table: str, column: str, what: str) -> None:
    if not schema.has_field(table, column):
        raise FilterError(f"{what} needs {table}.{column}, which this BMDB does not have")


def _heartbeat_condition(state: str, where: SqlWhere, schema: Schema) -> str:
    _require(schema, HEARTBEAT, "agent_heartbeat_at", "the heartbeat filter")
    op = ">" if state == "recent" else "<="
    return (
        "EXISTS (SELECT 1 FROM machine_agent_heartbeat h WHERE h.machine_id = m.machine_id"
        f" AND h.agent_heartbeat_at {op} now() - {where.param(HEARTBEAT_WINDOW)}::interval)"
    )


def _installation_condition(state: str, where: SqlWhere, schema: Schema) -> str:
    _require(schema, INSTALLATION_REQUEST, "generation", "the installation filter")
    _require(schema, INSTALLATION_REPORT, "generation", "the installation filter")
    if state == "pending":
        return (
            "EXISTS (SELECT 1 FROM machine_os_installation_request r"
            " WHERE r.machine_id = m.machine_id AND NOT EXISTS ("
            "SELECT 1 FROM machine_os_installation_report rep"
            " WHERE rep.machine_id = r.machine_id AND rep.generation >= r.generation))"
        )
    _require(schema, INSTALLATION_REPORT, "os_installation_result", f"installation={state}")
    result = where.param(_INSTALLATION_RESULT[state])
    return (
        "EXISTS (SELECT 1 FROM machine_os_installation_request r"
        " JOIN machine_os_installation_report rep ON rep.machine_id = r.machine_id"
        " WHERE r.machine_id = m.machine_id AND rep.generation >= r.generation"
        f" AND rep.os_installation_result::text = {result})"
    )


def _text_in(expression: str, values: tuple[str, ...], where: SqlWhere) -> str:
    """`expression` is one of `values` (one: `=`, as before there were several)."""
    if len(values) == 1:
        return f"{expression} = {where.param(values[0])}"
    return f"{expression} = ANY({where.param(values)}::text[])"


def check_labels(
    param: str, values: Sequence[str], labels: Sequence[str], *others: str
) -> None:
    """Each of `values` is one of the enum's reflected `labels` (or `others`, such as
    NULL): NotInSchema otherwise, which lists them. No labels: not an enum here, any
    value goes."""
    if not labels:
        return
    for value in values:
        if value not in labels and value not in others:
            raise NotInSchema(
                f"{param}={value[:100]!r} is not a label of its enum; they are:"
                f" {', '.join((*labels, *others))}"
            )


def _labels_in(
    column: str, field: reflection.Field | None, labels: tuple[str, ...], where: SqlWhere
) -> str:
    """`column` is one of these labels (checked: of its enum), written so the planner can
    use the column's statistics.

    `column::text = $1` hides them: at 100k machines the planner guessed 2 rows for 56k
    and sorted them all (90 ms, not 1 ms). The labels are bound as that enum type
    (`$1::provider`, `= ANY($1::provider[])`), so the planner estimates from the values
    (a filtered list runs on connections that plan each run for its values:
    POSTGRESQL_PLAN_PER_VALUES in app/bmdb/connection.py).
    """
    if field is None or not field.is_enum or field.is_array:
        return _text_in(f"{column}::text", labels, where)
    enum_type = quote_ident(field.udt_name)
    if len(labels) == 1:
        return f"{column} = {where.param(labels[0])}::{enum_type}"
    return f"{column} = ANY({where.param(labels)}::{enum_type}[])"


def _provided_conditions(filters: MachineFilters, where: SqlWhere, schema: Schema) -> list[str]:
    conditions = []
    provided = schema.tag(PROVIDED)

    def provided_field(name: str) -> reflection.Field | None:
        return provided.field(name) if provided is not None else None

    if filters.provider:
        field = provided_field("provider")
        check_labels("provider", filters.provider, field.enum_values if field else ())
        conditions.append(_labels_in("p.provider", field, filters.provider, where))
    if filters.status:
        field = provided_field("provider_status")
        check_labels("status", filters.status, field.enum_values if field else (), NULL_STATUS)
        labels = tuple(s for s in filters.status if s != NULL_STATUS)
        either = ["p.provider_status IS NULL"] if NULL_STATUS in filters.status else []
        if labels:
            either.append(_labels_in("p.provider_status", field, labels, where))
        conditions.append(either[0] if len(either) == 1 else f"({' OR '.join(either)})")
    if filters.location:
        conditions.append(f"p.provider_location = {where.param(filters.location)}")
    return conditions


def _id_or_provider_prefix(q: str, where: SqlWhere, schema: Schema) -> str:
    alternatives = []
    if bounds := uuid_prefix_range(q):
        low, high = where.param(bounds[0]), where.param(bounds[1])
        alternatives.append(f"m.machine_id BETWEEN {low}::uuid AND {high}::uuid")
    if schema.tag(PROVIDED) is not None:
        alternatives.append(
            "EXISTS (SELECT 1 FROM machine_provided p WHERE p.machine_id = m.machine_id"
            f" AND p.provider_id LIKE {where.param(like_prefix(q))})"
        )
    if not alternatives:
        raise FilterError(f"{q!r} is neither a machine ID prefix nor a provider ID prefix")
    return "(" + " OR ".join(alternatives) + ")"
