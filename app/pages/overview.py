"""Fleet overview (/overview): exact counts, each a link to the machines it counts.

Data: app.bmdb.overview (a handful of aggregate queries in the page's snapshot).
Every machine count links to the machine list filtered so that it lists exactly those
machines (tests/test_overview.py fetches each link and counts); session counts link
to the sessions list of their component and state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from app.bmdb import overview as repository
from app.bmdb.counts import CountCache
from app.bmdb.filters import (
    HEARTBEAT,
    HEARTBEAT_WINDOW,
    NULL_STATUS,
    MachineFilters,
)
from app.bmdb.reflection import Schema
from app.pages.json_models import QueryJSON, twin
from app.render.formatting import duration
from app.render.templating import CurrentSchema, PageSnapshot, is_htmx, render

router = APIRouter()

POLL_SECONDS = 10


class StatJSON(BaseModel):
    label: str
    count: int
    url: str  # the list of exactly these machines (or sessions)


class ProviderStatusJSON(BaseModel):
    provider: str
    status: str  # "NULL" for provider_status IS NULL, as the list's status filter names it
    count: int
    url: str


class AgentsJSON(BaseModel):
    started: StatJSON | None  # None when there is no AgentStarted tag
    heartbeat_recent: StatJSON
    heartbeat_stale: StatJSON
    never_heartbeated: StatJSON | None
    heartbeat_window_seconds: int


class InstallationJSON(BaseModel):
    pending: StatJSON
    complete: StatJSON | None  # None when reports have no os_installation_result
    failed: StatJSON | None


class ComponentSessionsJSON(BaseModel):
    component: str
    alive: StatJSON
    expired: StatJSON


class OverviewJSON(BaseModel):
    computed_at: datetime  # the snapshot's now(): when every count was true
    exact: bool = True  # count(*), not estimates
    machines: StatJSON
    tags: list[StatJSON]  # machines per tag type
    providers: list[StatJSON] | None  # None when there is no machine_provided table
    statuses: list[StatJSON] | None
    provider_statuses: list[ProviderStatusJSON] | None
    agents: AgentsJSON | None  # None when there is no heartbeat table
    installation: InstallationJSON | None  # None without request/report tables
    work: list[StatJSON]  # machines with work, per process
    stale_work: StatJSON  # machines with work held by an expired session
    active_backoffs: list[StatJSON]  # per process
    sessions: list[ComponentSessionsJSON]
    queries: list[QueryJSON] = []


def machines_url(**filters: object) -> str:
    query = MachineFilters(**filters).query()  # type: ignore[arg-type]
    return f"/?{query}" if query else "/"


def sessions_url(component: str, state: str) -> str:
    return "/sessions?" + urlencode({"component": component, "state": state})


def _stat(label: str, count: int, **filters: object) -> StatJSON:
    return StatJSON(label=label, count=count, url=machines_url(**filters))


def build_overview(counts: repository.FleetCounts, schema: Schema) -> OverviewJSON:
    providers: dict[str, int] = {}
    statuses: dict[str, int] = {}
    for p in counts.provided or ():
        status = p.status or NULL_STATUS
        providers[p.provider] = providers.get(p.provider, 0) + p.machines
        statuses[status] = statuses.get(status, 0) + p.machines

    def by_count(d: dict[str, int]) -> list[tuple[str, int]]:
        return sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))

    agents = None
    if counts.agents is not None:
        a = counts.agents
        window = duration(HEARTBEAT_WINDOW.total_seconds())
        started_tag = schema.tag(repository.AGENT_STARTED)
        heartbeat_tag = schema.tag(HEARTBEAT)
        assert heartbeat_tag is not None  # agents are only counted when it exists
        agents = AgentsJSON(
            started=_stat("agent started", a.started, has=(started_tag.name,))
            if started_tag
            else None,
            heartbeat_recent=_stat(
                f"heartbeat in the last {window}", a.heartbeat_recent, heartbeat="recent"
            ),
            heartbeat_stale=_stat(
                f"heartbeat older than {window}", a.heartbeat_stale, heartbeat="stale"
            ),
            never_heartbeated=_stat(
                "started, never heartbeated",
                a.never_heartbeated,
                has=(started_tag.name,),
                lacks=(heartbeat_tag.name,),
            )
            if started_tag
            else None,
            heartbeat_window_seconds=int(HEARTBEAT_WINDOW.total_seconds()),
        )

    installation = None
    if (i := counts.installation) is not None:
        installation = InstallationJSON(
            pending=_stat("pending", i.pending, installation="pending"),
            complete=None
            if i.complete is None
            else _stat("complete (Success)", i.complete, installation="complete"),
            failed=None
            if i.failed is None
            else _stat("failed (Error)", i.failed, installation="failed"),
        )

    provided = counts.provided is not None
    return OverviewJSON(
        computed_at=counts.computed_at,
        machines=_stat("machines", counts.machines),
        tags=[_stat(name, n, has=(name,)) for name, n in counts.tags.items()],
        providers=[_stat(p, n, provider=p) for p, n in by_count(providers)] if provided else None,
        statuses=[_stat(s, n, status=s) for s, n in by_count(statuses)] if provided else None,
        provider_statuses=[
            ProviderStatusJSON(
                provider=p.provider,
                status=p.status or NULL_STATUS,
                count=p.machines,
                url=machines_url(provider=p.provider, status=p.status or NULL_STATUS),
            )
            for p in counts.provided
        ]
        if counts.provided is not None
        else None,
        agents=agents,
        installation=installation,
        work=[_stat(process, n, work=process) for process, n in counts.work.items()],
        stale_work=_stat("stale work", counts.stale_work_machines, stale=True),
        active_backoffs=[
            _stat(process, n, backoff=process) for process, n in counts.backoffs.items()
        ],
        sessions=[
            ComponentSessionsJSON(
                component=c.component,
                alive=StatJSON(
                    label="alive", count=c.alive, url=sessions_url(c.component, "alive")
                ),
                expired=StatJSON(
                    label="expired", count=c.expired, url=sessions_url(c.component, "expired")
                ),
            )
            for c in counts.sessions
        ],
    )


@router.get(
    "/overview",
    name="overview",
    responses=twin(OverviewJSON, "fleet counts, each with the URL listing what it counts"),
)
async def overview_page(
    request: Request,
    snap: PageSnapshot,
    schema: CurrentSchema,
    live: Annotated[bool, Query(description="poll every 10 s; live=0 pauses")] = True,
):
    # Every count scans the fleet (~90 ms at 100k machines): taken at most once per
    # WEBUG_COUNT_CACHE_SECONDS however many tabs poll; the page says when.
    cache: CountCache = request.app.state.count_cache
    counts, _ = await cache.get(
        ("overview", schema.layout_key, schema.version),
        lambda: repository.fleet_counts(snap, schema),
    )
    overview = build_overview(counts, schema)
    context = {"o": overview, "live": live, "every": POLL_SECONDS, "count_ttl": cache.ttl}
    template = "partials/overview_live.html" if is_htmx(request) else "templates/overview.html"
    return render(request, template, context, snap=snap, data=lambda: overview)
