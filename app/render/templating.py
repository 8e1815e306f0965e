"""The one door every response goes out by: the HTML page, the htmx fragment or the JSON
twin of one page model.

A handler builds its page model (app/model/entities.py) and calls `respond`: a client
that asks for JSON gets the model serialized, anyone else the template rendered with it
(`page`), the view's state (poll interval, ...) and what every page shows (header,
footer), in the app's environment (app/render/environment.py).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from app.bmdb.connection import Reader
from app.bmdb.schema_cache import SchemaCache
from app.render import protobuf_names
from app.render.fragments import Fragments
from app.slices import map_in_slices, model_json_in_slices


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


def environment(request: Request) -> jinja2.Environment:
    return request.app.state.templates


async def rows_html(request: Request, template: str, rows: list, *args: Any) -> Markup:
    """The macro `row` of `template` for each of `rows` (with `args`), each kept while it
    is unchanged (app/render/fragments.py), a slice at a time (app/slices.py): the 5,000
    rows of a long list page, rendered in one go, held the event loop for 0.1-0.2 s. The
    page's template gets them ready."""
    fragments: Fragments = environment(request).globals["fragments"]
    keyed = fragments.digest_of(args)
    drawn = await map_in_slices(lambda row: fragments.row(template, keyed, row, *args), rows)
    return Markup("").join(drawn)


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
        item_json: Any,
    ) -> None:
        super().__init__(b"", status_code, headers)
        self._page, self._slices, self._names = page, slices, names
        self._item_json = item_json

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        names = protobuf_names.use(self._names)  # protobuf values decode by name in JSON
        try:
            self.body = await model_json_in_slices(self._page, *self._slices, self._item_json)
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
    if page is not None and json_requested(request):
        return _json_twin(request, page, reader, status_code, headers, json_slices)
    started = time.perf_counter()
    app_state = request.app.state
    cache: SchemaCache = app_state.schema_cache
    context = {
        "request": request,
        "bmdb": app_state.bmdb_label,
        "demo": app_state.settings.demo,
        "schema": cache.schema if cache.loaded else None,
        "tag_types": cache.schema.tag_types if cache.loaded else (),
        "reader": reader,
        # Read by the footer, the last thing drawn: the page's rendering up to there.
        "render_ms": lambda: (time.perf_counter() - started) * 1000,
        "page": page,
        **view,
    }
    body = environment(request).get_template(template).render(context)
    return HTMLResponse(body, status_code=status_code, headers=headers)


def _json_twin(
    request: Request,
    page: BaseModel,
    reader: Reader | None,
    status_code: int,
    headers: dict[str, str] | None,
    json_slices: tuple[str, dict[str, Any]] | None,
) -> Response:
    if reader is not None and "queries" in type(page).model_fields:
        page = page.model_copy(update={"queries": list(reader.queries)})
    names = request.app.state.proto_names
    if json_slices is not None:
        # List items are kept like the rows they are drawn as (app/render/fragments.py);
        # their JSON also depends on the reflected tag types.
        fragments: Fragments = environment(request).globals["fragments"]
        cache: SchemaCache = request.app.state.schema_cache
        layout_key = cache.schema.layout_key if cache.loaded else ""
        item_json = functools.partial(fragments.item_json, layout_key)
        return _SlicedJSONTwin(page, json_slices, names, status_code, headers, item_json)
    token = protobuf_names.use(names)
    try:
        body = page.model_dump_json()
    finally:
        protobuf_names.reset(token)
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")
