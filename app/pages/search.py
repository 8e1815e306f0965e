"""Search (/search?q=): hot links from whatever an operator pasted from chat or an alert.

One ID (or prefix, provider ID, reservation ID, IP address) is looked up whole, prefixes
included. Any text, up to MAX_QUERY (an alert, log lines, JSON), is also searched for
every machine ID, session ID, provider ID, reservation ID and IP address in it, exactly
and in any letter case (app/model/search.py).

One match -> 303 to it. Machines named by several values of the text and no session ->
303 to the watch list of them (what an operator holding an alert wants); with sessions
too -> the list, which links that watch list. Otherwise the list, grouped by kind; none
-> 404 "nothing found".

Long pastes: GET /search?q= takes the whole MAX_QUERY (the security middleware allows
/search a longer query string than other routes), and POST /search takes the same text
as a form field `q` (the search page's text area) or as a text/plain body: a request
body is not limited by proxies the way a request line is (nginx refuses lines over
8 KiB by default). The same-origin check refuses other sites' POSTs.

Data: app/bmdb/search.py, one statement for every kind of thing the text can name.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import RedirectResponse

from app.bmdb.connection import Reader
from app.bmdb.reflection import Schema
from app.deps import CurrentSchema, PageReader
from app.model.ids import normalize
from app.model.search import MAX_QUERY, SearchPage, search, search_response
from app.model.twin import twin
from app.render import urls
from app.render.templating import json_requested

router = APIRouter()

MAX_BODY = 3 * MAX_QUERY + 1024  # a POSTed form: the text percent-encoded, and the name
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not tab or line ends; no NUL in text


async def _answer(request: Request, reader: Reader, schema: Schema, q: str):
    text = normalize(q)
    if not text:
        return search_response(request, reader, SearchPage(q="", searched=False))
    size = len(text.encode())
    if size > MAX_QUERY:
        raise HTTPException(400, f"The search text has {size} bytes; at most {MAX_QUERY} (16 KiB).")
    if _CONTROL.search(text):
        raise HTTPException(
            400, "The search text contains control characters (other than tabs and line "
            "ends); no ID does.",
        )  # fmt: skip
    page = await search(reader, schema, text)
    if page.redirect is not None and not json_requested(request):
        return RedirectResponse(page.redirect, status_code=303)
    return search_response(request, reader, page)


SEARCH_RESPONSES = {
    **twin(SearchPage, "matches for a pasted ID or text, grouped by kind"),
    303: {"description": "one match, or a text naming several machines and no session"
          " (HTML only): redirect to it, or to the watch list of the machines"},
    404: {"model": SearchPage, "description": "nothing matched"},
}  # fmt: skip


@router.get(urls.SEARCH, name="search", responses=SEARCH_RESPONSES)
async def search_page(
    request: Request,
    reader: PageReader,
    schema: CurrentSchema,
    q: Annotated[
        str,
        Query(
            description="machine/session ID or hex prefix (≥4 digits), provider ID "
            "(or prefix, ≥3 chars), provider reservation ID, or IP address; or any text "
            f"up to {MAX_QUERY} bytes naming any of them",
        ),
    ] = "",
):
    """Browsers are redirected to a unique match; `?format=json` always answers the list."""
    return await _answer(request, reader, schema, q)


@router.post(
    urls.SEARCH,
    name="search_posted",
    responses={**SEARCH_RESPONSES, 413: {"description": "more than 16 KiB of text"},
               415: {"description": "neither a form nor text/plain"}},
)  # fmt: skip
async def search_posted(request: Request, reader: PageReader, schema: CurrentSchema):
    """The same search for a long paste: a form's field `q` (the search page's text area),
    or the text itself as a text/plain body (`curl --data-binary @alert.txt`)."""
    return await _answer(request, reader, schema, await _posted_text(request))


async def _posted_text(request: Request) -> str:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", "text/plain"):
        raise HTTPException(415, "POST /search takes a form (field q) or a text/plain body.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPException(413, f"At most {MAX_QUERY} bytes (16 KiB) of text.")
    try:
        if kind == "text/plain":
            return body.decode()
        form = parse_qs(body.decode("ascii"), max_num_fields=10, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "The posted text is not valid UTF-8.") from None
    return form.get("q", [""])[0]
