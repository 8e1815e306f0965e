"""What every page handler shares: templates, the page's snapshot, full page vs fragment."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable, Hashable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import Markup
from pydantic import BaseModel

from app.bmdb.connection import Database, Snapshot
from app.bmdb.machines import Machine, fingerprint
from app.bmdb.reflection import Schema
from app.bmdb.schema_cache import SchemaCache
from app.render import formatting
from app.render.fragment_cache import FragmentCache
from app.render.relative_times import Unfilled, fill, later
from app.render.tag_hints import detail_order, tag_hint
from app.render.values import render_text, render_value

APP_DIR = Path(__file__).resolve().parents[1]  # app/: templates/, partials/, static/

# Pages live in templates/, the fragments they include (and htmx fetches) in partials/.
templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(APP_DIR),
    autoescape=True,  # everything from the database is HTML-escaped
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters.update(formatting.FILTERS)
templates.filters["relative"] = later  # filled in per response: rendered HTML stays reusable
templates.filters["fingerprint"] = fingerprint
templates.globals["tag_hint"] = tag_hint
templates.globals["detail_order"] = detail_order
templates.globals["render_value"] = render_value
templates.globals["render_text"] = render_text

# The machine list's rows, each reused while its machine is unchanged (a page where one
# machine changed renders one row), and the whole live table, reused while everything it
# shows is: a poll of an unchanged page fills in its times and nothing else.
machine_rows: FragmentCache[Markup] = FragmentCache(max_chars=32 * 1024 * 1024)
machine_tables: FragmentCache[Unfilled] = FragmentCache(max_chars=8 * 1024 * 1024)

# Per-response values in a reused table: slots only this process can write.
_CLOCK_SLOT = "\x1d" + secrets.token_hex(8) + "clock\x1d"
_SERVER_MS_SLOT = "\x1d" + secrets.token_hex(8) + "ms\x1d"
_TABLE_CONTEXT = (
    "filters", "machines", "fetched", "schema", "total", "limit", "after", "next_after",
    "live", "every", "poll_choices",
)  # fmt: skip


def machine_rows_html(machines: list[Machine], schema: Schema) -> Markup:
    """The <tr>s of the machine list (partials/machine_row.html for each machine)."""
    macro = templates.get_template("partials/machine_row.html").module.machine_row
    return Markup("").join(
        machine_rows.get((schema.layout_key, m.state_key), lambda m=m: macro(m, schema.tag_types))
        for m in machines
    )


@jinja2.pass_context
def machine_table(context: jinja2.runtime.Context) -> Markup:
    """partials/machine_list_table.html for the page in `context` (pages/machines.py).

    Keyed by the records fetched for the page (repository.fill_details, compared in C)
    and the view's parameters; its clock, server time and relative times are filled in
    per response. A page whose records cannot be keyed is rendered every time.
    """
    values = {name: context[name] for name in _TABLE_CONTEXT}

    def render_table() -> Unfilled:
        template = templates.get_template("partials/machine_list_table.html")
        slots = {"now_utc": _CLOCK_SLOT, "server_ms": _SERVER_MS_SLOT}
        return Unfilled(template.render({**values, **slots}))

    if values["fetched"] is None:
        table = render_table()
    else:  # everything the table shows: the machines by their records, the view
        key = (
            values["schema"].layout_key,
            *(values[n] for n in _TABLE_CONTEXT if n != "schema" and n != "machines"),
        )
        table = machine_tables.get(key, render_table)
    html = table.fill(datetime.now(UTC))
    html = html.replace(_CLOCK_SLOT, context["now_utc"])
    return Markup(html.replace(_SERVER_MS_SLOT, context["server_ms"]))


templates.globals["machine_table"] = machine_table
templates.globals["machine_rows_html"] = machine_rows_html

# Partials whose data is itself cached (facet counts): rendered once per computation.
cached_partials: FragmentCache[Markup] = FragmentCache(max_chars=8 * 1024 * 1024)


def cached_partial(key: Hashable, template: str, context: dict[str, Any]) -> Markup:
    """`template` rendered with `context` alone, reused while `key` is unchanged; `key`
    must cover everything in `context`."""
    return cached_partials.get(
        (template, key), lambda: Markup(templates.get_template(template).render(context))
    )


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def wants_json(request: Request) -> bool:
    """The JSON twin is asked for with ?format=json or an Accept that prefers JSON."""
    fmt = request.query_params.get("format")
    if fmt is not None:
        return fmt == "json"
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


async def page_snapshot(request: Request) -> AsyncIterator[Snapshot]:
    db: Database = request.app.state.db
    async with db.snapshot() as snap:
        yield snap


async def current_schema(request: Request) -> Schema:  # async: FastAPI runs a sync one in a thread
    cache: SchemaCache = request.app.state.schema_cache
    return cache.schema


PageSnapshot = Annotated[Snapshot, Depends(page_snapshot)]
CurrentSchema = Annotated[Schema, Depends(current_schema)]


def render(
    request: Request,
    template: str,
    context: dict,
    *,
    snap: Snapshot | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    data: Callable[[], BaseModel | dict] | None = None,
) -> Response:
    """Render a page (or a partial) with the header and footer context every page has.

    `data` builds the page's JSON twin, served instead when the client asks for JSON.
    """
    if data is not None and wants_json(request):
        payload = jsonable_encoder(data())
        if snap is not None and isinstance(payload, dict):
            payload["queries"] = [
                {"sql": q.sql, "ms": round(q.ms, 3), "rows": q.rows} for q in snap.queries
            ]
        return JSONResponse(payload, status_code=status_code, headers=headers)
    started = time.perf_counter()
    app_state = request.app.state
    cache: SchemaCache = app_state.schema_cache
    full_context = {
        "request": request,
        "bmdb": app_state.bmdb_label,
        "demo": app_state.settings.demo,
        "schema": cache.schema if cache.loaded else None,
        "tag_types": cache.schema.tag_types if cache.loaded else (),
        "snap": snap,
        "now_utc": datetime.now(UTC).strftime("%H:%M:%SZ"),
        **context,
    }
    body = fill(templates.get_template(template).render(full_context), datetime.now(UTC))
    render_ms = (time.perf_counter() - started) * 1000
    body = body.replace("__RENDER_MS__", f"{render_ms:.1f}")
    return HTMLResponse(body, status_code=status_code, headers=headers)
