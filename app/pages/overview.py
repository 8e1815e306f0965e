"""Fleet overview (/overview): exact counts, each a link to the machines it counts.

Data: app.bmdb.overview (a handful of aggregate queries in the page's snapshot).
Every machine count links to the machine list filtered so that it lists exactly those
machines (tests/test_overview.py fetches each link and counts); session counts link
to the sessions list of their component and state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.bmdb import overview as bmdb
from app.bmdb import tables
from app.bmdb.counts import Counted
from app.bmdb.filters import (
    HEARTBEAT_WINDOW,
    NULL_STATUS,
)
from app.bmdb.machine_states import BLOCKERS
from app.bmdb.reflection import Schema
from app.bmdb.workflows import APPLIES, Fleet
from app.deps import Counts, CurrentSchema, HistoryCache, PageReader, Workflows
from app.model.activity import ActivityFields, activity_fields, read_activity
from app.model.entities import Model, PageModel
from app.model.polling import Poll, PollTag
from app.model.twin import twin
from app.render import urls
from app.render.formatting import duration
from app.render.templating import is_htmx, json_requested, respond

router = APIRouter()



class Stat(Model):
    label: str
    count: int
    url: str  # the list of exactly these machines (or sessions)


class ProviderStatus(Model):
    provider: str
    status: str  # "NULL" for provider_status IS NULL, as the list's status filter names it
    count: int
    url: str


class Agents(Model):
    started: Stat | None  # None when there is no AgentStarted tag
    heartbeat_recent: Stat
    heartbeat_stale: Stat
    never_heartbeated: Stat | None
    heartbeat_window_seconds: int


class Installation(Model):
    pending: Stat
    complete: Stat | None  # None when reports have no os_installation_result
    failed: Stat | None


class ComponentSessions(Model):
    component: str
    alive: Stat
    expired: Stat


class WorkflowCounts(Model):
    workflow: str
    component: str
    # eligible, running, waiting, blocked (those it can be in), each labelled by its state
    states: list[Stat]
    known: bool  # False: this schema lacks its tables (every machine unknown)


class OverviewPage(ActivityFields, PageModel):
    """The fleet's counts; the JSON twin also carries the activity series (ActivityFields,
    app/pages/activity.py), which the HTML page loads as a fragment of its own."""

    computed_at: datetime  # the snapshot's now(): when every count was true
    exact: bool = True  # count(*), not estimates
    machines: Stat
    tags: list[Stat]  # machines per tag type
    providers: list[Stat] | None  # None when there is no machine_provided table
    statuses: list[Stat] | None
    provider_statuses: list[ProviderStatus] | None
    agents: Agents | None  # None when there is no heartbeat table
    installation: Installation | None  # None without request/report tables
    work: list[Stat]  # machines with work, per process
    stale_work: Stat  # machines with work held by an expired session
    active_backoffs: list[Stat]  # per process
    sessions: list[ComponentSessions]
    workflows: list[WorkflowCounts]  # who would pick machines up (app/bmdb/workflows.py)
    # Some workflow applies, and it is blocked with no end in sight; by blocker, the first
    # that holds (app/bmdb/machine_states.py, docs/workflows.md)
    stuck: Stat
    stuck_by: list[Stat]
    unmanaged: Stat  # no workflow applies (no Provided tag, no installation request)


def _stat(label: str, count: int, **filters: object) -> Stat:
    return Stat(label=label, count=count, url=urls.machines(**filters))


def _sessions_stat(state: str, component: str, count: int) -> Stat:
    return Stat(label=state, count=count, url=urls.sessions(component=component, state=state))


def _workflows(counts: bmdb.FleetCounts, fleet: Fleet) -> list[WorkflowCounts]:
    return [
        WorkflowCounts(
            workflow=w.name,
            component=w.spec.component,
            known=w.known,
            states=[
                _stat(state, counts.workflows.get(w.name, {}).get(state, 0),
                      workflow=w.name, workflow_state=state)
                for state in w.states
                if state in APPLIES
            ],
        )  # fmt: skip
        for w in fleet.workflows
    ]


def build_overview(counts: bmdb.FleetCounts, schema: Schema, fleet: Fleet) -> OverviewPage:
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
        started_tag = schema.tag(tables.AGENT_STARTED)
        heartbeat_tag = schema.tag(tables.HEARTBEAT)
        assert heartbeat_tag is not None  # agents are only counted when it exists
        agents = Agents(
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
        installation = Installation(
            pending=_stat("pending", i.pending, installation="pending"),
            complete=None
            if i.complete is None
            else _stat("complete (Success)", i.complete, installation="complete"),
            failed=None
            if i.failed is None
            else _stat("failed (Error)", i.failed, installation="failed"),
        )

    provided = counts.provided is not None
    return OverviewPage(
        computed_at=counts.computed_at,
        machines=_stat("machines", counts.machines),
        tags=[_stat(name, n, has=(name,)) for name, n in counts.tags.items()],
        providers=[_stat(p, n, provider=p) for p, n in by_count(providers)] if provided else None,
        statuses=[_stat(s, n, status=s) for s, n in by_count(statuses)] if provided else None,
        provider_statuses=[
            ProviderStatus(
                provider=p.provider,
                status=p.status or NULL_STATUS,
                count=p.machines,
                url=urls.machines(provider=p.provider, status=p.status or NULL_STATUS),
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
            ComponentSessions(
                component=c.component,
                alive=_sessions_stat("alive", c.component, c.alive),
                expired=_sessions_stat("expired", c.component, c.expired),
            )
            for c in counts.sessions
        ],
        workflows=_workflows(counts, fleet),
        stuck=_stat("stuck", sum(counts.stuck.values()), stuck=True),
        stuck_by=[
            _stat(label, counts.stuck.get(name, 0), stuck=True, blocker=name)
            for name, label in BLOCKERS
        ],
        unmanaged=_stat("unmanaged", counts.unmanaged, unmanaged=True),
    )


@router.get(
    urls.OVERVIEW,
    name="overview",
    responses=twin(OverviewPage, "fleet counts, each with the URL listing what it counts"),
)
async def overview_page(
    request: Request,
    reader: PageReader,
    schema: CurrentSchema,
    fleet: Workflows,
    cache: Counts,
    reads: HistoryCache,
    live: Annotated[bool, Query(description="poll every 10 s; live=0 pauses")] = True,
):
    # Every count scans the fleet (~90 ms at 100k machines): taken at most once per
    # WEBUG_COUNT_CACHE_SECONDS however many tabs poll; the page says when.
    counts, _ = await cache.get(
        ("overview", schema.layout_key, schema.version),
        lambda: bmdb.fleet_counts(reader, schema, fleet),
    )
    poll = Poll(live, urls.OVERVIEW_EVERY, (urls.OVERVIEW_EVERY,), request.headers.get("HX-PTag"))
    tag = PollTag(poll, "overview", schema.layout_key)
    # Unchanged, or a process whose counts are older than the browser's: it keeps its own.
    if tag.known == counts.digest or (tag.counted and tag.counted.newer_than(counts.computed_at)):
        return tag.unchanged()
    ptag = tag.of(counts.digest, Counted.of(counts.computed_at))
    overview = build_overview(counts, schema, fleet)
    if json_requested(request):
        # A second statement when due: the activity is a shared history read with an
        # interval and a budget of its own (app/bmdb/history_reads.py).
        read = await read_activity(reads, reader)
        overview = overview.model_copy(update=activity_fields(read, reads.ttl))
    template = "partials/overview_live.html" if is_htmx(request) else "templates/overview.html"
    return respond(
        request, template, overview, reader=reader, headers={"HX-PTag": ptag}, poll=poll,
        ptag=ptag, count_ttl=cache.ttl,
    )  # fmt: skip
