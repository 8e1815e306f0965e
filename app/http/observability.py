"""Metrics for Prometheus (/metrics), request IDs and structured (JSON) logs.

One pure ASGI middleware (no BaseHTTPMiddleware: no extra task, no body buffering) does
per request: take the request ID from `X-Request-ID` when it is sane, else make one, echo
it in the response and attach it to every log record of the request; time the request
into a histogram labelled by the route *template* (`/machine/{machine_id}`, never the
raw path, so one series per page rather than per machine); write one access log line.

/metrics (text format) has:

- `webug_http_request_duration_seconds{method,route,status}` histogram;
- `webug_db_query_duration_seconds` histogram and `webug_db_query_errors_total{error}`,
  fed by `app.bmdb.connection.query_hook` for every statement a page runs;
- `webug_db_pool_connections_in_use`, `_open`, `_max` gauges (read at scrape time);
- `webug_schema_info{version,dirty}`, `webug_schema_loaded`, `webug_schema_tag_types`
  and `webug_schema_refresh_failures_total` (SchemaCache.failures);
- `webug_bmdb_reachable` (1/0) and `webug_bmdb_reachable_age_seconds`: the last
  evidence, from /healthz answers, page queries (a connection error says 0, any answer
  says 1) or, when that evidence is older than REACHABLE_FRESH_SECONDS, a `SELECT 1` at
  scrape time bounded by REACHABLE_CHECK_TIMEOUT. No answer in time counts as 0, except
  when every pool connection is lent out (a busy pool is not an unreachable BMDB): then
  nothing changes, and the age says how old the evidence is.

Several uvicorn workers (`--workers N`): each is its own process with its own pools, and
a scrape reaches one of them. They share a metrics directory (PROMETHEUS_MULTIPROC_DIR,
set for them when unset: app/http/worker_metrics.py), so every scrape reports the sum
over the workers: histograms and counters as they happen, and each worker's pool gauges
and refresh failures, which it writes there every SAMPLE_SECONDS (and the scraped one at
the scrape). The schema and reachability gauges describe the BMDB as the worker that
answered sees it.

Logs: WEBUG_LOG_FORMAT=json makes every log line (webug's, uvicorn's) one JSON object
with `ts`, `level`, `logger`, `msg`, the `request_id` of the request it belongs to and
any structured extras; uvicorn's own access log is replaced by `webug.access`. In either
format, control characters in a record made during a request (CR/LF in a decoded path,
say) are escaped (`\\x0d`), so a client cannot forge a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.bmdb import connection as db_module
from app.config import Settings
from app.http import worker_metrics
from app.render import urls

access_log = logging.getLogger("webug.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Accepted from the client: what proxies and tracing systems send (UUIDs, hex, base64ish).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REACHABLE_FRESH_SECONDS = 15.0
REACHABLE_CHECK_TIMEOUT = 2.0

request_id_var: ContextVar[str | None] = ContextVar("webug_request_id", default=None)

# --- metrics fed as things happen (module level: one set per process) ----------------

METRICS = CollectorRegistry(auto_describe=True)
REQUEST_SECONDS = Histogram(
    "webug_http_request_duration_seconds",
    "HTTP request latency by route template",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=METRICS,
)
QUERY_SECONDS = Histogram(
    "webug_db_query_duration_seconds",
    "latency of each BMDB statement run for a page",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=METRICS,
)
QUERY_ERRORS = Counter(
    "webug_db_query_errors",
    "BMDB statements that failed, by exception class",
    ["error"],
    registry=METRICS,
)

# --- a process's own state, read at scrape time (`_pool_and_failures`) or, when workers
# share a metrics directory, written to it (`_sample_process`): registered nowhere, the
# directory's collector reads them from their files.
SAMPLE_SECONDS = 2.0
POOL_GAUGES = {
    "in_use": "BMDB connections lent to requests",
    "open": "BMDB connections open (in use or idle)",
    "max": "BMDB connection pool maximum (WEBUG_POOL_MAX_SIZE)",
}
SHARED_POOL_GAUGES = {
    name: Gauge(f"webug_db_pool_connections_{name}", text, registry=None,
                multiprocess_mode="livesum")
    for name, text in POOL_GAUGES.items()
}  # fmt: skip
REFRESH_FAILURES_TEXT = "schema reflections that failed (each retry counts)"
SHARED_REFRESH_FAILURES = Counter(
    "webug_schema_refresh_failures", REFRESH_FAILURES_TEXT, registry=None
)


@dataclass
class Reachability:
    """The last evidence about whether the BMDB answers."""

    reachable: bool | None = None
    at: float = field(default=0.0)  # time.monotonic() of that evidence

    def saw(self, reachable: bool) -> None:
        self.reachable, self.at = reachable, time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.at if self.reachable is not None else float("inf")


@dataclass
class AppObservability:
    """What one application instance observes (tests run several in one process)."""

    app: FastAPI
    reachability: Reachability = field(default_factory=Reachability)
    failures_written: int = 0  # refresh failures already added to SHARED_REFRESH_FAILURES
    # Collectors read when /metrics is scraped (app/fleet/collector.py adds the fleet's).
    scrape_time: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=False)
    )


_current: ContextVar[AppObservability | None] = ContextVar("webug_observability", default=None)


def _on_query(seconds: float, error: BaseException | None) -> None:
    """app.bmdb.connection.query_hook: every statement a page runs."""
    QUERY_SECONDS.observe(seconds)
    if error is not None and not isinstance(error, Exception):
        return  # cancelled (client went away): says nothing about the BMDB
    if error is not None:
        QUERY_ERRORS.labels(type(error).__name__).inc()
    obs = _current.get()
    if obs is not None:
        obs.reachability.saw(not isinstance(error, db_module.DB_UNAVAILABLE))


def _pool_and_failures(obs: AppObservability) -> tuple[dict[str, int], int]:
    """This process's pool gauges and schema refresh failures."""
    state = obs.app.state
    database = getattr(state, "db", None)
    stats = database.pool_stats() if database is not None else (0, 0, 0)
    cache = getattr(state, "schema_cache", None)
    return dict(zip(POOL_GAUGES, stats, strict=True)), cache.failures if cache else 0


def _sample_process(obs: AppObservability) -> None:
    """This worker's share of the pool gauges and refresh failures, into its metric files."""
    pool, failures = _pool_and_failures(obs)
    for name, value in pool.items():
        SHARED_POOL_GAUGES[name].set(value)
    if failures > obs.failures_written:
        SHARED_REFRESH_FAILURES.inc(failures - obs.failures_written)
        obs.failures_written = failures


class _ScrapeTimeCollector:
    """Gauges read from the application's state when /metrics is scraped: all of them
    for a process alone; with workers sharing a metrics directory, those about the BMDB
    (the pools' and the failures' sums come from the directory)."""

    def __init__(self, obs: AppObservability, *, per_process: bool) -> None:
        self.obs = obs
        self.per_process = per_process

    def collect(self):
        if self.per_process:
            pool, failures = _pool_and_failures(self.obs)
            for name, value in pool.items():
                yield GaugeMetricFamily(
                    f"webug_db_pool_connections_{name}", POOL_GAUGES[name], value=value
                )
            yield CounterMetricFamily(
                "webug_schema_refresh_failures", REFRESH_FAILURES_TEXT, value=failures
            )
        yield from self._bmdb_families()

    def _bmdb_families(self):
        state = self.obs.app.state
        cache = getattr(state, "schema_cache", None)
        loaded = cache is not None and cache.loaded
        yield GaugeMetricFamily(
            "webug_schema_loaded", "1 once the BMDB schema has been reflected", value=int(loaded)
        )
        if loaded:
            schema = cache.schema
            info = GaugeMetricFamily(
                "webug_schema_info",
                "reflected schema: schema_migrations version and dirty flag",
                labels=["version", "dirty"],
            )
            info.add_metric([str(schema.version), str(schema.dirty).lower()], 1)
            yield info
            yield GaugeMetricFamily(
                "webug_schema_tag_types", "tag tables found", value=len(schema.tag_types)
            )

        seen = self.obs.reachability
        if seen.reachable is not None:
            yield GaugeMetricFamily(
                "webug_bmdb_reachable",
                "1 when the BMDB answered at the last evidence, 0 when it did not",
                value=int(seen.reachable),
            )
            yield GaugeMetricFamily(
                "webug_bmdb_reachable_age_seconds",
                "age of the evidence behind webug_bmdb_reachable",
                value=seen.age(),
            )


# --- the middleware --------------------------------------------------------------------


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            with contextlib.suppress(UnicodeDecodeError):
                candidate = value.decode("ascii")
                if _SANE_REQUEST_ID.fullmatch(candidate):
                    return candidate
            break
    return uuid.uuid4().hex


@dataclass(frozen=True)
class _RouteTemplate:
    regex: re.Pattern[str]
    template: str
    methods: frozenset[str] | None


def route_templates(app: FastAPI) -> list[_RouteTemplate]:
    """Every route of the app, in matching order, as (path regex, template, methods)."""
    try:  # FastAPI keeps included routers as branches; this walks them as the router does
        from fastapi.routing import iter_route_contexts

        routes = list(iter_route_contexts(app.router.routes))
    except ImportError:  # older FastAPI: already flat
        routes = list(app.router.routes)
    out = []
    for route in routes:
        regex = getattr(route, "path_regex", None)
        template = getattr(route, "path_format", None)
        if regex is not None and template:
            methods = getattr(route, "methods", None)
            out.append(_RouteTemplate(regex, template, frozenset(methods) if methods else None))
    return out


def route_label(scope: Scope, templates: Sequence[_RouteTemplate]) -> str:
    """The template of the route that serves this request; bounded, never the raw path.

    Matched here rather than read from scope["route"]: inner middleware may hand the
    router a copy of the scope (app/http/resilience.py does, to retry), so the router's
    annotation never reaches this one.
    """
    path, method = scope.get("path", ""), scope.get("method")
    partial = None
    for route in templates:
        if route.regex.match(path):
            if route.methods is None or method in route.methods:
                return route.template
            partial = partial or route.template  # right path, wrong method: 405
    return partial or "(unmatched)"


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, obs: AppObservability) -> None:
        self.app = app
        self.obs = obs
        self._templates: list[_RouteTemplate] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        tokens = (
            request_id_var.set(rid),
            _current.set(self.obs),
        )
        status = 500  # unless a response starts: an exception escaped to the server
        start = time.perf_counter()
        recorded = False

        def record() -> None:
            """Metrics and the access log line, once per request."""
            nonlocal recorded
            if recorded:
                return
            recorded = True
            self._record(scope, status, time.perf_counter() - start)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.append(REQUEST_ID_HEADER, rid)
                # Time spent before the response starts: browsers' devtools show it, and
                # bench/bench.py reads it as the server's latency (no client overhead).
                elapsed_ms = (time.perf_counter() - start) * 1000
                headers.append("Server-Timing", f"app;dur={elapsed_ms:.2f}")
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Recorded before the last byte leaves: a client that reads /metrics right
                # after this response (from another worker, too) finds it counted.
                record()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            record()  # no response, or it failed half-way
            _current.reset(tokens[1])
            request_id_var.reset(tokens[0])

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        if self._templates is None:  # the first request: every route is added by now
            self._templates = route_templates(self.obs.app)
        route = route_label(scope, self._templates)
        method = scope.get("method", "")
        REQUEST_SECONDS.labels(
            method if method in _METHODS else "OTHER", route, str(status)
        ).observe(elapsed)
        if route == urls.HEALTH and status in (200, 503):
            self.obs.reachability.saw(status == 200)
        if access_log.isEnabledFor(logging.INFO):
            path = printable(scope.get("path", ""))  # the record factory escapes the args
            access_log.info(
                "%s %s %d %.1fms",
                method,
                path,
                status,
                elapsed * 1000,
                extra={  # request_id: every record made now has it (record factory)
                    "method": printable(method),
                    "path": path,
                    "query": printable(scope.get("query_string", b"").decode("latin-1")),
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )


# --- logs ------------------------------------------------------------------------------

_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, request_id, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


# Client text in a log line (a percent-decoded path, a header): a CR, LF, VT, NEL or
# Unicode line separator would start a forged line in a text log, an ESC would drive the
# reader's terminal. Each control character becomes its \xNN (\uNNNN) escape.
_CONTROL_ESCAPES = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def printable(text: str) -> str:
    """`text` on one line, each control character escaped: CR LF is `\\x0d\\x0a`."""
    return text.translate(_CONTROL_ESCAPES)


def _one_line(value: object) -> object:
    """A log argument that prints on one line: numbers as they are (%d, %.1f still work)."""
    if isinstance(value, str):
        return printable(value)
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)  # an exception's message, say, may quote the client
    escaped = printable(text)
    return value if escaped == text else escaped


def _escape_record(record: logging.LogRecord) -> None:
    """The message and arguments of a record made during a request, control characters
    escaped: whatever a handler logs, a client cannot add a line to a text log."""
    record.msg = _one_line(record.msg)
    if isinstance(record.args, Mapping):
        record.args = {key: _one_line(value) for key, value in record.args.items()}
    elif record.args:
        record.args = tuple(_one_line(arg) for arg in record.args)


_factory_installed = False


def _install_record_factory() -> None:
    """Every log record made during a request carries that request's ID, and no client
    text can break it over lines."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id_var.get()
        if record.request_id is not None:
            _escape_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def configure_logging(log_format: str) -> None:
    """json: one JSON object per line on stderr for webug and uvicorn; text: leave as is."""
    if log_format != "json":
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # webug.access says the same with the request ID and route template.
    logging.getLogger("uvicorn.access").disabled = True


# --- installation ----------------------------------------------------------------------


def install_observability(app: FastAPI, settings: Settings) -> None:
    """Request IDs, access logs, /metrics."""
    _install_record_factory()
    configure_logging(settings.log_format)
    db_module.query_hook = _on_query
    obs = AppObservability(app)
    app.state.observability = obs
    shared_dir = worker_metrics.metrics_dir()
    scrape_time = obs.scrape_time
    scrape_time.register(_ScrapeTimeCollector(obs, per_process=shared_dir is None))

    async def metrics(request: Request) -> Response:
        await _check_reachable(obs)
        if shared_dir is not None:
            from prometheus_client import multiprocess

            _sample_process(obs)
            worker_metrics.forget_dead_workers()
            fed = CollectorRegistry()
            multiprocess.MultiProcessCollector(fed, shared_dir)
        else:
            fed = METRICS
        body = generate_latest(fed) + generate_latest(scrape_time)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(urls.METRICS, metrics, methods=["GET"], include_in_schema=False)
    if shared_dir is not None:
        _sample_while_serving(app, obs)
    # Added last, so outermost: it times and tags everything the other middleware does.
    app.add_middleware(ObservabilityMiddleware, obs=obs)


def _sample_while_serving(app: FastAPI, obs: AppObservability) -> None:
    """Around the app's lifespan: this worker writes its share every SAMPLE_SECONDS (the
    others' scrapes read it), and takes it back when it ends."""
    serving = app.router.lifespan_context

    async def sample_forever() -> None:
        while True:
            _sample_process(obs)
            await asyncio.sleep(SAMPLE_SECONDS)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with serving(app) as state:
            sampler = asyncio.create_task(sample_forever(), name="worker-metrics")
            try:
                yield state
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
                worker_metrics.leaving()

    app.router.lifespan_context = lifespan


async def _check_reachable(obs: AppObservability) -> None:
    """A quick `SELECT 1` when the last evidence about the BMDB is stale."""
    database = getattr(obs.app.state, "db", None)
    if database is None or obs.reachability.age() < REACHABLE_FRESH_SECONDS:
        return
    in_use, _, max_size = database.pool_stats()
    try:
        ok = await asyncio.wait_for(database.ping(), REACHABLE_CHECK_TIMEOUT)
    except TimeoutError:
        if in_use >= max_size:
            return  # every connection is lent out: a busy pool, no evidence either way
        ok = False  # a free slot, yet no answer in time: connecting or the server hangs
    obs.reachability.saw(ok)
