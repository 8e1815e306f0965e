"""Responses of every page: the HTML page, the htmx fragment or the JSON twin of one model.

A handler builds its page model (app/model/entities.py) and calls `respond`: a client that
asks for JSON gets the model serialized, anyone else the template rendered with it
(`page`) and the view's state (poll interval, ...). Templates live in templates/ (pages)
and partials/ (the fragments pages include and htmx fetches).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Hashable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from app.bmdb import tables
from app.bmdb.columns import PgSpecial
from app.bmdb.connection import Reader
from app.bmdb.reflection import Schema, TagType
from app.bmdb.schema_cache import SchemaCache
from app.render import formatting, protobuf_names, urls
from app.render.fragment_cache import FragmentCache
from app.render.relative_times import Unfilled, fill, later
from app.render.tag_hints import detail_order, tag_hint
from app.render.values import render_text, render_value, special
from app.slices import map_in_slices, model_json_in_slices

APP_DIR = Path(__file__).resolve().parents[1]  # app/: templates/, partials/, static/

templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(APP_DIR),
    autoescape=True,  # everything from the database is HTML-escaped
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters.update(formatting.FILTERS)
templates.filters["relative"] = later  # filled in per response: rendered HTML stays reusable
templates.tests["special"] = lambda value: isinstance(value, PgSpecial)
templates.globals.update(
    urls=urls,
    tables=tables,
    tag_hint=tag_hint,
    detail_order=detail_order,
    render_value=render_value,
    render_text=render_text,
    special=special,
)


def fingerprint(value: object) -> str:
    """A short digest of a value's repr: a key that changes when what it shows does (the
    detail page's blocks flash on change)."""
    return hashlib.blake2b(repr(value).encode(), digest_size=6).hexdigest()


templates.filters["fingerprint"] = fingerprint

# The machine list's rows, keyed by the md5 of the machine's document (which the BMDB
# computes): a page where one machine changed renders one row, and a new field in the
# document changes the key, so a reused row can never be stale. Relative times in a row
# are markers filled in per response (app/render/relative_times.py).
machine_rows: FragmentCache[Unfilled] = FragmentCache(max_chars=32 * 1024 * 1024)


async def machine_rows_html(rows: list, schema: Schema) -> Markup:
    """The <tr>s of the machine list (partials/machine_row.html for each of its rows,
    app/pages/machines.py's ListRow: a reused row's machine is never decoded), their
    relative times filled in, a slice at a time (app/slices.py): 5,000 rows rendered
    inside the template held the event loop for 0.1-0.2 s. The template gets them ready."""
    macro = templates.get_template("partials/machine_row.html").module.machine_row
    now = datetime.now(UTC)

    def row(r: Any) -> Markup:
        key = (schema.layout_key, r.key)
        # Kept cut at its markers (Unfilled), so a reused row is filled without a rescan.
        html = machine_rows.get(key, lambda: Unfilled(str(macro(r.machine, schema.tag_types))))
        return html.fill(now)

    return Markup("").join(await map_in_slices(row, rows))


# A watch list's rows (app/pages/watch.py), keyed like the list's by the md5 of the
# machine's document, plus what a row shows besides it (WatchRow.view_key): a poll of
# 100 watched machines where one changed renders one row.
watch_rows: FragmentCache[Markup] = FragmentCache(max_chars=8 * 1024 * 1024)


def watch_rows_html(rows: list, schema: Schema) -> Markup:
    """The <tr>s of a watch list (partials/watch_row.html for each of its rows,
    app/pages/watch.py's WatchRow: a reused row's machine is never decoded)."""
    macro = templates.get_template("partials/watch_row.html").module.watch_row
    return Markup("").join(
        watch_rows.get((schema.layout_key, *r.view_key), lambda r=r: macro(r.machine))
        for r in rows
    )


templates.globals["watch_rows_html"] = watch_rows_html

# Blocks rendered from counts (the list's facets): hundreds of links, the same for every
# view of a filter until its counts are taken again.
blocks: FragmentCache[Markup] = FragmentCache(max_chars=8 * 1024 * 1024)


def reused_block(template: str, key: Hashable, **context: Any) -> Markup:
    """`template` rendered with `context`, reused while `key` is unchanged: `key` must
    identify everything in `context` (e.g. the view and when its counts were taken)."""
    return blocks.get(
        (template, key), lambda: Markup(templates.get_template(template).render(context))
    )


templates.globals["reused_block"] = reused_block

# A machine page's tag blocks: a poll where its work or backoffs changed renders no tag
# anew (a hardware report is hundreds of values).
tag_blocks: FragmentCache[Markup] = FragmentCache(max_chars=8 * 1024 * 1024)


def tag_block(schema: Schema, machine_id: object, tag: TagType, values: dict[str, Any]) -> Markup:
    """partials/machine_tag.html for one tag of a machine, reused while everything it
    shows is unchanged: its values, the reflected tag types (`schema.layout_key`), the
    descriptor set that names protobuf fields, and the machine (its download links)."""
    digest = fingerprint(values)
    key = (schema.layout_key, tag.name, protobuf_names.current_digest(), machine_id, digest)
    return tag_blocks.get(
        key,
        lambda: Markup(
            templates.get_template("partials/machine_tag.html").render(
                tag=tag, values=values, id=machine_id, digest=digest
            )
        ),
    )


templates.globals["tag_block"] = tag_block


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def wants_json(headers: Mapping[str, str], format_param: str | None) -> bool:
    """The JSON twin is asked for with ?format=json or an Accept that prefers JSON."""
    if format_param is not None:
        return format_param == "json"
    accept = headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def json_requested(request: Request) -> bool:
    return wants_json(request.headers, request.query_params.get("format"))


# Render time goes into the footer after rendering; a per-process token, so text from
# the database cannot contain the placeholder.
_RENDER_MS = "\x1d" + secrets.token_hex(8) + "render-ms\x1d"


class _SlicedJSONTwin(Response):
    """A JSON twin serialized in slices when it is sent (see `respond`)."""

    media_type = "application/json"

    def __init__(
        self,
        page: BaseModel,
        slices: tuple[str, dict[str, Any]],
        names: protobuf_names.ProtoNames | None,
        status_code: int,
        headers: dict[str, str] | None,
    ) -> None:
        super().__init__(b"", status_code, headers)
        self._page, self._slices, self._names = page, slices, names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        names = protobuf_names.use(self._names)  # as `respond` does for the others
        try:
            self.body = await model_json_in_slices(self._page, *self._slices)
        finally:
            protobuf_names.reset(names)
        self.headers["content-length"] = str(len(self.body))
        await super().__call__(scope, receive, send)


def respond(
    request: Request,
    template: str,
    page: BaseModel | None = None,
    *,
    reader: Reader | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    json_slices: tuple[str, dict[str, Any]] | None = None,
    **view: Any,
) -> Response:
    """`page` as JSON when the client asks for it, else `template` rendered with `page`,
    the view's state (`view`) and what every page shows (header, footer).

    The statements `reader` ran go into the JSON twin (`queries`) and the footer.
    `json_slices`: (a long list in `page`'s JSON, the update of `page` that empties it):
    the twin is then serialized a slice at a time as it is sent (app/slices.py).
    """
    as_json = page is not None and json_requested(request)
    if as_json and reader is not None and "queries" in type(page).model_fields:
        page = page.model_copy(update={"queries": list(reader.queries)})
    # Protobuf columns are decoded with the app's descriptor set, if it has one.
    proto_names = getattr(request.app.state, "proto_names", None)
    if as_json and json_slices is not None:
        return _SlicedJSONTwin(page, json_slices, proto_names, status_code, headers)
    names = protobuf_names.use(proto_names)
    try:
        if as_json:
            return Response(
                page.model_dump_json(),
                status_code=status_code,
                headers=headers,
                media_type="application/json",
            )
        return _page_html(request, template, page, reader, status_code, headers, view)
    finally:
        protobuf_names.reset(names)


def _page_html(
    request: Request,
    template: str,
    page: BaseModel | None,
    reader: Reader | None,
    status_code: int,
    headers: dict[str, str] | None,
    view: dict[str, Any],
) -> Response:
    started = time.perf_counter()
    app_state = request.app.state
    cache: SchemaCache = app_state.schema_cache
    now = datetime.now(UTC)
    context = {
        "request": request,
        "bmdb": app_state.bmdb_label,
        "demo": app_state.settings.demo,
        "schema": cache.schema if cache.loaded else None,
        "tag_types": cache.schema.tag_types if cache.loaded else (),
        "reader": reader,
        "now_utc": formatting.absolute(now, "time"),  # HH:MM:SSZ, local in the browser if asked
        "render_ms": _RENDER_MS,
        "page": page,
        **view,
    }
    body = fill(templates.get_template(template).render(context), now)
    render_ms = (time.perf_counter() - started) * 1000
    body = body.replace(_RENDER_MS, f"{render_ms:.1f}")
    return HTMLResponse(body, status_code=status_code, headers=headers)
