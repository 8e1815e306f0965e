"""The page model: what a page's BMDB document decodes into.

One model serves both outputs: the templates render it and the JSON twin serializes it
(`model_dump_json`), so no field is copied from one shape into another. Documents come
from app/bmdb; values of reflected tag columns are re-typed by app/bmdb/columns.py.
Values Python cannot hold ('infinity', a timestamp past year 9999) stay what PostgreSQL
wrote (`PgSpecial`) in HTML and JSON alike.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    computed_field,
)

from app.bmdb.columns import PgSpecial, parse_timestamp
from app.bmdb.connection import QueryRecord
from app.bmdb.machines import MachineLayout
from app.bmdb.reflection import TagType
from app.render import urls
from app.render.values import value_to_json


def _timestamp(value: object) -> datetime | PgSpecial:
    parsed = parse_timestamp(value)
    if isinstance(parsed, datetime):
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed
    if isinstance(parsed, PgSpecial):
        return parsed
    raise ValueError(f"not a timestamp: {value!r}")


def _timestamp_json(value: datetime | PgSpecial) -> str:
    if isinstance(value, PgSpecial):
        return value.text
    return value.isoformat().replace("+00:00", "Z")


# A timestamp column of a BMDB table: a datetime (UTC), or PostgreSQL's own text for
# values a datetime cannot hold ('infinity', '-infinity', beyond year 9999).
Timestamp = Annotated[
    Any,
    PlainValidator(_timestamp),
    PlainSerializer(_timestamp_json, when_used="json"),
    WithJsonSchema({
        "type": "string",
        "description": "ISO 8601 in UTC, or 'infinity' / '-infinity' as stored",
    }),
]


def seconds_until(ts: datetime | PgSpecial, now: datetime) -> float | None:
    """Seconds from `now` to `ts` (negative: past); None for an infinite time."""
    if isinstance(ts, PgSpecial):
        return None
    return round((ts - now).total_seconds(), 3)


def minus_seconds(ts: datetime | PgSpecial, seconds: int | None) -> datetime | PgSpecial | None:
    """`ts` minus a stored number of seconds: 'infinity' stays itself (as in PostgreSQL);
    None when the result has no datetime (year 10000 minus a minute, year 1 minus a day)."""
    if isinstance(ts, PgSpecial):
        return ts if ts.text in ("infinity", "-infinity") and seconds is not None else None
    if seconds is None:
        return None
    try:
        return ts - timedelta(seconds=seconds)
    except OverflowError:
        return None


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")


# --- machines ---------------------------------------------------------------------------


class Work(Model):
    process: str
    session_id: UUID
    component: str | None
    runtime_info: str | None
    session_created_at: Timestamp | None
    session_interval_seconds: int | None
    session_deadline: Timestamp | None
    session_alive: bool
    # Since when: the machine's last Started event of this process (None: none recorded)
    started: Timestamp | None = None

    @computed_field
    @property
    def stale(self) -> bool:
        """Held by a session that has expired: nobody is doing this work."""
        return not self.session_alive

    @computed_field
    @property
    def session_url(self) -> str:
        return urls.session(self.session_id)


class Backoff(Model):
    process: str
    until: Timestamp
    cause: str
    last_interval_seconds: int | None
    active: bool

    @property
    def started(self) -> datetime | PgSpecial | None:
        """When the failure that set it happened: `until` minus its interval."""
        return minus_seconds(self.until, self.last_interval_seconds)


class TagValues(dict):
    """A machine's tags: tag name -> {field name -> value}, keeping each tag's type for
    the JSON twin (values are rendered and serialized by their reflected column type)."""

    __slots__ = ("types",)

    def __init__(self, values: dict[str, dict[str, object]], types: dict[str, TagType]):
        super().__init__(values)
        self.types = types


def _decode_tags(value: object, info: ValidationInfo) -> TagValues:
    if isinstance(value, TagValues):
        return value
    layout: MachineLayout = info.context["layout"]
    return TagValues(*layout.decode_tags(value))  # type: ignore[arg-type]


def _tags_json(tags: TagValues) -> dict[str, dict[str, object]]:
    return {
        name: {k: value_to_json(tags.types[name].field(k), v) for k, v in values.items()}
        for name, values in tags.items()
    }


Tags = Annotated[
    TagValues,
    PlainValidator(_decode_tags),
    PlainSerializer(_tags_json),
    WithJsonSchema({
        "type": "object",
        "description": "tag name -> field name -> value (bytes as {length, hex, base64, ...})",
        "additionalProperties": {"type": "object"},
    }),
]


class Blocker(Model):
    """A condition of a workflow that fails, with its evidence from the machine's rows."""

    kind: Literal["tag", "work", "stale_work", "backoff", "heartbeat", "installation"]
    label: str  # in a few words, for the list: "stale ShepherdAccess work"
    detail: str
    at: Timestamp | None = None  # when the evidence happened: a tag's time, a heartbeat, ...
    until: Timestamp | None = None  # when it stops failing, when that is known
    change: str | None = None  # what happens then: "the ShepherdRecovery backoff ends"
    url: str | None = None


class ConditionState(Model):
    label: str  # what must hold: "has Provided", "no work of ShepherdAccess, ..."
    holds: bool


class WorkflowStatus(Model):
    """Whether, and when, a workflow's component would pick the machine up."""

    workflow: str
    process: str | None
    component: str
    state: Literal["not_needed", "eligible", "running", "waiting", "blocked", "unknown"]
    # When it becomes eligible if nothing else changes: the latest end of the conditions
    # that fail, when all of them end at known times (waiting; or not_needed because the
    # agent heartbeats); else null.
    eligible_at: Timestamp | None
    change: str | None  # what happens at eligible_at
    why: str  # the state in words
    blockers: list[Blocker]
    conditions: list[ConditionState]
    missing: list[str]  # unknown: what this schema version lacks


class Machine(Model):
    machine_id: UUID
    created_at: Timestamp
    tags: Tags
    work: list[Work]
    backoffs: list[Backoff]
    # md5 of the machine's document (by the BMDB): changes with anything in it, a
    # heartbeat too (rows flash by keys of what means something instead); not part of
    # the JSON twin.
    key: str = Field("", exclude=True)
    # Its workflows' states, on lists that read them (workflow views: workflow=, stuck=,
    # blocker=, eligible=).
    workflows: list[WorkflowStatus] | None = Field(None, exclude=True)
    blocker: str | None = Field(
        None, description="on workflow views, what keeps a stuck machine stuck (the first"
        " that holds: stale_work, failed_installation, no_workflow_acts; docs/workflows.md);"
        " null when it is not stuck, and on other views",
    )  # fmt: skip

    @computed_field
    @property
    def url(self) -> str:
        return urls.machine(self.machine_id)

    @property
    def render_digest(self) -> str:
        """What its rendering depends on (app/render/fragments.py): the md5 of its document,
        which covers every value decoded from it. A subclass with more fields has none."""
        return self.key if type(self) is Machine else ""

    @property
    def active_backoffs(self) -> list[Backoff]:
        return [b for b in self.backoffs if b.active]

    @property
    def stale_work(self) -> list[Work]:
        return [w for w in self.work if w.stale]


def machine_from(document: dict, layout: MachineLayout, key: str = "") -> Machine:
    return Machine.model_validate({**document, "key": key}, context={"layout": layout})


class HistoryEvent(Model):
    process: str
    event: str
    timestamp: Timestamp
    failed_cause: str | None


class PageModel(Model):
    """What every page model has: the statements that read its data (for the footer and
    the JSON twin; app.render.templating.respond fills them in)."""

    queries: list[QueryRecord] = []


# --- sessions ---------------------------------------------------------------------------


class Session(Model):
    session_id: UUID
    component: str
    runtime_info: str
    created_at: Timestamp
    interval_seconds: int
    deadline: Timestamp
    alive: bool
    held_work: int

    @computed_field
    @property
    def url(self) -> str:
        return urls.session(self.session_id)

    @property
    def expired(self) -> bool:
        return not self.alive

    @computed_field
    @property
    def deadline_in_seconds(self) -> float | None:
        """Seconds until the deadline as this is served (negative: expired that long ago;
        null for an infinite deadline)."""
        return seconds_until(self.deadline, datetime.now(UTC))

    @computed_field
    @property
    def last_heartbeat_estimate(self) -> Timestamp | None:
        """deadline − interval: when the owner last renewed it (it sets now() + interval)."""
        return minus_seconds(self.deadline, self.interval_seconds)


class ErrorPage(Model):
    """Every error page's model (app/http/errors.py renders them)."""

    status: int
    error: str
    detail: str
    search: str | None = None  # a text the search page may find what was asked for by
