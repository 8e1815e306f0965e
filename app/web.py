"""What every page handler shares: templates, the page's snapshot, full page vs fragment."""

from __future__ import annotations

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

from app import formatting
from app.db import Database, Snapshot
from app.fragment_cache import FragmentCache
from app.reflection import Schema
from app.relative_times import Unfilled, fill, later
from app.repository.machines import Machine, fingerprint
from app.schema_refresh import SchemaCache
from app.tag_hints import detail_order, tag_hint
from app.values import render_text, render_value

APP_DIR = Path(__file__).resolve().parent

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

# The machine list's rows, reused while unchanged: each page of rows by exactly what was
# fetched for it, so a poll of an unchanged page is one lookup; on a miss each row by
# (layout, machine, data), so a page where one machine changed renders one row.
machine_rows: FragmentCache[Markup] = FragmentCache(max_chars=32 * 1024 * 1024)
machine_row_pages: FragmentCache[Unfilled] = FragmentCache(max_chars=4 * 1024 * 1024)


def machine_rows_html(machines: list[Machine], schema: Schema, fetched: Hashable | None) -> Markup:
    """The <tr>s of the machine list (partials/machine_row.html for each machine), with
    their relative times filled in. `fetched`: what repository.fill_details returned."""

    def render_rows() -> Unfilled:
        macro = templates.get_template("partials/machine_row.html").module.machine_row
        return Unfilled(
            "".join(
                machine_rows.get(
                    (schema.layout_key, m.state_key), lambda m=m: macro(m, schema.tag_types)
                )
                for m in machines
            )
        )

    if fetched is None:  # nothing to key the page by: rows one by one
        return render_rows().fill(datetime.now(UTC))
    return machine_row_pages.get((schema.layout_key, fetched), render_rows).fill(datetime.now(UTC))


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
