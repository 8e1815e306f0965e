"""Every URL webug serves, links to or redirects to, spelled in one place.

Routes are declared with the path templates below; templates (as the Jinja global
`urls`), JSON twins and redirects build links with the functions. Parameters at their
default are left out, so links stay short and a pasted URL says only what differs.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, urlencode
from uuid import UUID

from pydantic import BaseModel

from app.bmdb.backoff_list import BackoffFilters
from app.bmdb.filters import MachineFilters
from app.bmdb.tag_tables import TagQuery
from app.bmdb.work_list import WorkFilters

# Route paths: a rename here renames the route and every link to it.
MACHINES = "/"
MACHINE = "/machine/{machine_id}"
MACHINE_LIVE = "/machine/{machine_id}/live"
MACHINE_HISTORY = "/machine/{machine_id}/history"
MACHINE_TAG_VALUE = "/machine/{machine_id}/tag/{tag}/{field}"
PROVIDER = "/provider/{provider}/{provider_id}"
SESSIONS = "/sessions"
SESSION = "/session/{session_id}"
SESSION_LIVE = "/session/{session_id}/live"
WORK = "/work"
BACKOFFS = "/backoffs"
TAGS = "/tags"
TAG_TABLE = "/tags/{tag}"
SEARCH = "/search"
WATCH = "/watch"
WATCH_FILTERED = "/watch/filtered"
OVERVIEW = "/overview"
FAILURES = "/failures"
ACTIVITY = "/activity"
FORECAST = "/forecast"
SCHEMA = "/schema"
SCHEMA_REFRESH = "/schema/refresh"
HEALTH = "/healthz"
METRICS = "/metrics"
API = "/api"
OPENAPI = "/openapi.json"
STATIC = "/static"
FAVICON = "/favicon.ico"

# Each live view's default poll interval (seconds).
LIST_EVERY = 5
SESSIONS_LIMIT = 100  # the sessions list's default page size, left out of its links
LIST_LIMIT = 100  # the default page size of /work, /backoffs and the tag tables (ditto)
DETAIL_EVERY = 2
OVERVIEW_EVERY = 10


def _with_query(path: str, pairs: Iterable[tuple[str, object]], safe: str = "") -> str:
    query = urlencode([(k, str(v)) for k, v in pairs if v is not None], safe=safe)
    return f"{path}?{query}" if query else path


def _segment(value: object) -> str:
    return quote(str(value), safe="")


def _poll(live: bool, every: int | None) -> list[tuple[str, object]]:
    """A live view's poll: `every` when given (polls and their controls say it; plain
    links leave it to the view's default), `live=0` when paused."""
    return [("every", every), ("live", None if live else 0)]


# --- machines ---------------------------------------------------------------------------


def machines(
    filters: MachineFilters | None = None,
    *,
    after: UUID | str | None = None,
    limit: int | None = None,
    live: bool = True,
    every: int | None = None,
    format: str | None = None,
    **filter_values: object,
) -> str:
    """The machine list: these filters and order (or `filter_values`, such as
    has=["Provided"]), this keyset page, this poll; `format="csv"`: its CSV download."""
    if filter_values:
        filters = MachineFilters(**{
            name: tuple(value) if isinstance(value, list | tuple) else value
            for name, value in filter_values.items()
        })  # type: ignore[arg-type]
    pairs: list[tuple[str, object]] = list(filters.query()) if filters else []
    if format is not None:  # a download: every page, no poll
        return _with_query(MACHINES, [*pairs, ("format", format)])
    pairs += [("after", after), ("limit", limit), *_poll(live, every)]
    return _with_query(MACHINES, pairs)


def machine(
    machine_id: UUID | str, *, live: bool = True, every: int | None = None,
    window: str | None = None,
) -> str:  # fmt: skip
    """A machine's page; `window`: its timeline's zoom (1h, 6h, 24h, 7d, all)."""
    return _with_query(
        MACHINE.format(machine_id=_segment(machine_id)), [("window", window), *_poll(live, every)]
    )


def machine_tag(machine_id: UUID | str, tag: str) -> str:
    """A tag's block on the machine page."""
    return f"{machine(machine_id)}#tag-{_segment(tag)}"


def machine_live(machine_id: UUID, *, live: bool = True, every: int | None = None) -> str:
    return _with_query(
        MACHINE_LIVE.format(machine_id=machine_id), _poll(live, every)
    )


def machine_history(
    machine_id: UUID, *, process: str | None = None, offset: int = 0, limit: int | None = None,
    window: str | None = None, live: bool = True, every: int | None = None,
) -> str:  # fmt: skip
    return _with_query(
        MACHINE_HISTORY.format(machine_id=machine_id),
        [("process", process), ("offset", offset or None), ("limit", limit),
         ("window", window), *_poll(live, every)],
    )  # fmt: skip


def machine_tag_value(machine_id: UUID, tag: str, field: str) -> str:
    """The download of one tag field's whole value."""
    return MACHINE_TAG_VALUE.format(
        machine_id=machine_id, tag=_segment(tag), field=_segment(field)
    )


def provider(provider_name: str, provider_id: str) -> str:
    return PROVIDER.format(provider=_segment(provider_name), provider_id=_segment(provider_id))


# --- sessions ---------------------------------------------------------------------------


def sessions(
    *,
    component: str | None = None,
    state: str = "all",
    after: UUID | None = None,
    limit: int | None = None,
    live: bool = True,
    every: int | None = None,
    format: str | None = None,
) -> str:
    """The sessions list; `format="csv"`: its CSV download (every page)."""
    if format is not None:
        return _with_query(SESSIONS, [
            ("component", component), ("state", state if state != "all" else None),
            ("format", format),
        ])  # fmt: skip
    pairs = [
        ("component", component),
        ("state", state if state != "all" else None),
        ("after", after),
        ("limit", limit if limit != SESSIONS_LIMIT else None),
        *_poll(live, every if every != LIST_EVERY else None),
    ]
    return _with_query(SESSIONS, pairs)


def session(session_id: UUID, *, live: bool = True, every: int | None = None) -> str:
    return _with_query(SESSION.format(session_id=session_id), _poll(live, every))


def session_live(session_id: UUID, *, live: bool = True, every: int | None = None) -> str:
    return _with_query(
        SESSION_LIVE.format(session_id=session_id), _poll(live, every)
    )


# --- work, backoffs, tag tables ----------------------------------------------------------


def _changed(model: BaseModel) -> list[tuple[str, object]]:
    """A filter model's parameters that differ from their defaults."""
    return [
        (name, value)
        for name, info in type(model).model_fields.items()
        if (value := getattr(model, name)) != info.default
    ]


def _list(
    path: str,
    pairs: list[tuple[str, object]],
    after: str | None,
    limit: int | None,
    live: bool,
    every: int | None,
    format: str | None,
) -> str:
    """A keyset list with these filters: a page and its poll, or (`format`) a download of
    every page."""
    if format is not None:
        return _with_query(path, [*pairs, ("format", format)])
    return _with_query(path, [
        *pairs, ("after", after), ("limit", limit if limit != LIST_LIMIT else None),
        *_poll(live, every if every != LIST_EVERY else None),
    ])  # fmt: skip


def _filtered(
    path: str,
    filters: BaseModel,
    *,
    after: str | None = None,
    limit: int | None = None,
    live: bool = True,
    every: int | None = None,
    format: str | None = None,
    **changes: object,
) -> str:
    filters = filters.model_copy(update=changes)
    return _list(path, _changed(filters), after, limit, live, every, format)


def work(filters: WorkFilters | None = None, **options: object) -> str:
    """Every work item: these filters and order (or changes to them: `state="stale"`), a
    page (`after`, `limit`), its poll (`live`, `every`) or its CSV (`format="csv"`)."""
    return _filtered(WORK, filters or WorkFilters(), **options)  # type: ignore[arg-type]


def backoffs(filters: BackoffFilters | None = None, **options: object) -> str:
    """Every backoff: as `work`."""
    return _filtered(BACKOFFS, filters or BackoffFilters(), **options)  # type: ignore[arg-type]


def tags(*, live: bool = True, every: int | None = None) -> str:
    return _with_query(TAGS, _poll(live, every))


def tag_table(
    query: TagQuery | str,
    *,
    after: str | None = None,
    limit: int | None = None,
    live: bool = True,
    every: int | None = None,
    format: str | None = None,
) -> str:
    """A tag type's table (a tag name: unfiltered, by machine ID), with its filters."""
    name, pairs = (query, []) if isinstance(query, str) else (query.tag.name, query.query())
    path = TAG_TABLE.format(tag=_segment(name))
    return _list(path, list(pairs), after, limit, live, every, format)


# --- watch lists ------------------------------------------------------------------------


def watch(
    ids: Iterable[object] = (), capped: bool = False, *, live: bool = True,
    every: int | None = None,
) -> str:
    """The watch list of these machine IDs or prefixes (commas left readable); `capped`:
    they are the first of a longer list."""
    pairs = [("ids", ",".join(str(i) for i in ids) or None), ("capped", 1 if capped else None)]
    return _with_query(WATCH, [*pairs, *_poll(live, every)], safe=",")


def watch_filtered(filters: MachineFilters) -> str:
    """Opens the first machines of the list's filter (in its order) as a watch list."""
    return _with_query(WATCH_FILTERED, filters.query())


# --- the rest ---------------------------------------------------------------------------


def search(q: str | None = None) -> str:
    return _with_query(SEARCH, [("q", q or None)])


def overview(*, live: bool = True, every: int | None = None) -> str:
    return _with_query(OVERVIEW, _poll(live, every))


def failures(since: str | None = None) -> str:
    """Failure groups; `since` is the history window (canonical text, e.g. `7d`)."""
    return _with_query(FAILURES, [("since", since)])


def failure_group(group_id: str) -> str:
    """A failure group's row on /failures (its default window)."""
    return f"{FAILURES}#g-{_segment(group_id)}"


def activity() -> str:
    return ACTIVITY


FORECAST_HOURS = 24  # the forecast's default horizon, left out of its links


def forecast(hours: int | None = None, *, format: str | None = None) -> str:
    """What happens next, over the next `hours`; `format="json"`: its JSON twin."""
    return _with_query(
        FORECAST, [("hours", hours if hours != FORECAST_HOURS else None), ("format", format)]
    )


def schema() -> str:
    return SCHEMA


def schema_refresh() -> str:
    return SCHEMA_REFRESH


def api() -> str:
    return API


def openapi() -> str:
    return OPENAPI


def static(name: str) -> str:
    return f"{STATIC}/{name}"
