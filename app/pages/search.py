"""Search (/search?q=): hot links from whatever ID an operator pasted from chat or an alert.

One match -> 303 to it; several -> the list, grouped by kind; none -> 404 "nothing found".
Also /machine/<prefix> (`machine_prefix`, which pages/machine.py hands such IDs to).

Data: app/bmdb/search.py, one statement for every kind of thing the text can name.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import Field, computed_field

from app.bmdb import search as bmdb
from app.bmdb.connection import Reader
from app.bmdb.reflection import Schema
from app.bmdb.search import SearchKinds
from app.pages.json_models import twin
from app.pages.models import Model, PageModel
from app.render import urls
from app.render.templating import CurrentSchema, PageReader, json_requested, respond

router = APIRouter()

MAX_QUERY = 200  # longer than any ID; bounds what is echoed and searched
LIMIT = 50  # matches listed per kind
MIN_HEX_DIGITS = 4  # shortest machine / session ID prefix
MIN_PROVIDER_PREFIX = 3  # shortest provider ID prefix
_HEX_ID = re.compile(r"^[0-9a-fA-F-]+$")
_IP_LIKE = re.compile(r"^[0-9a-fA-F.:%/\[\]]+$")  # IPv4, IPv6 (zone, brackets), CIDR
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # PostgreSQL text can't even hold NUL
_PASTE_NOISE = " \t\r\n'\"`"  # what chat and alerts wrap IDs in

Kind = Literal["machine", "session", "provider_id", "reservation_id", "ip"]
KIND_TITLES: dict[str, str] = {
    "machine": "Machines by ID",
    "session": "Sessions by ID",
    "provider_id": "Machines by provider ID",
    "reservation_id": "Machines by provider reservation ID",
    "ip": "Machines by IP address",
}

HELP = (
    "Paste a machine ID or session ID (or a prefix of at least 4 hex digits, dashes "
    "optional, any case), a provider ID (or a prefix of at least 3 characters), a provider "
    "reservation ID, or an IP address. One match opens it; several are listed."
)


class Match(Model):
    kind: Kind
    id: UUID  # the machine's or the session's
    label: str  # what the row is (provider identity, session component)
    matched: str  # the value that matched the query
    exact: bool  # the whole value matched, not a prefix

    @computed_field
    @property
    def url(self) -> str:
        return urls.session(self.id) if self.kind == "session" else urls.machine(self.id)


class Group(Model):
    kind: Kind
    matches: list[Match]
    more: bool  # more than LIMIT matched; only the first LIMIT are listed
    more_url: str | None = None  # a page that lists them all, when there is one

    @property
    def title(self) -> str:
        return KIND_TITLES[self.kind]


class SearchPage(PageModel):
    q: str
    groups: list[Group] = Field(default=[], exclude=True)
    notes: list[str] = []  # why some kinds were not searched
    limit: int = LIMIT
    searched: bool = Field(default=True, exclude=True)  # False: the empty search form

    @computed_field
    @property
    def matches(self) -> list[Match]:
        """Grouped by kind, in the order of the groups."""
        return [m for g in self.groups for m in g.matches]

    @computed_field
    @property
    def truncated(self) -> list[Kind]:
        """Kinds with more than `limit` matches (only `limit` listed)."""
        return [g.kind for g in self.groups if g.more]

    @computed_field
    @property
    def redirect(self) -> str | None:
        """Where a browser is sent (303): the one thing that matched, or the one exact
        match. Exact matches win over prefix matches, so a pasted full provider ID opens
        its machine even when longer provider IDs start with it. JSON never redirects."""
        targets = {m.url for m in self.matches}  # a truncated kind alone lists LIMIT of them
        if len(targets) == 1:
            return targets.pop()
        exact = {m.url for m in self.matches if m.exact}
        return exact.pop() if len(exact) == 1 else None


def normalize(q: str) -> str:
    return q.strip(_PASTE_NOISE)


def hex_digits(text: str) -> int:
    """How many hex digits `text` has if it can be a UUID prefix, else 0."""
    if not _HEX_ID.match(text):
        return 0
    digits = len(text.replace("-", ""))
    return digits if digits <= 32 and len(text) <= 36 else 0


def provider_label(provided: list | None) -> str:
    """[provider, provider_id, reservation, ip] as a search result describes a machine."""
    if provided is None:
        return "not provided"
    provider, provider_id, reservation, ip = provided
    parts = [f"{provider} {provider_id}"]
    if reservation:
        parts.append(f"reservation {reservation}")
    if ip:
        parts.append(f"IP {ip}")
    return " · ".join(parts)


def _group(kind: Kind, matches: list[Match], more_url: str | None = None) -> Group | None:
    if not matches:
        return None
    more = len(matches) > LIMIT
    return Group(kind=kind, matches=matches[:LIMIT], more=more, more_url=more_url if more else None)


def _groups(doc: dict, q: str) -> list[Group]:
    """The search document as groups of matches, in the order kinds are listed."""
    exact_id = hex_digits(q) == 32
    all_of_prefix = urls.machines(q=q)  # the list filtered by the prefix: all of them
    groups = [
        _group(
            "machine",
            [Match(kind="machine", id=i, label=provider_label(p), matched=i, exact=exact_id)
             for i, p in doc.get("machine", ())],  # fmt: skip
            None if exact_id else all_of_prefix,
        ),
        _group(
            "session",
            [
                Match(
                    kind="session",
                    id=i,
                    label=f"{component or '?'} · {'alive' if alive else 'expired'}",
                    matched=i,
                    exact=exact_id,
                )
                for i, component, alive in doc.get("session", ())
            ],
        ),
        _group(
            "provider_id",
            [Match(kind="provider_id", id=i, label=provider_label(p), matched=p[1],
                   exact=p[1] == q) for i, p in doc.get("provider_id", ())],  # fmt: skip
            all_of_prefix,
        ),
        *(
            _group(
                kind,
                [Match(kind=kind, id=i, label=provider_label(p), matched=q, exact=True)
                 for i, p in doc.get(kind, ())],  # fmt: skip
            )
            for kind in ("reservation_id", "ip")
        ),
    ]
    return [g for g in groups if g is not None]


def _notes(schema: Schema, q: str) -> list[str]:
    notes = []
    if 0 < hex_digits(q) < MIN_HEX_DIGITS:
        notes.append(f"Machine and session ID prefixes need at least {MIN_HEX_DIGITS} hex digits.")
    if bmdb.provided_tag(schema) is None:
        notes.append("This BMDB has no machine_provided table: no provider IDs or IPs.")
        return notes
    if len(q) < MIN_PROVIDER_PREFIX:
        notes.append(
            f"Provider ID prefixes need at least {MIN_PROVIDER_PREFIX} characters;"
            " only exact provider IDs were looked up."
        )
    for column in (bmdb.RESERVATION, bmdb.IP_ADDRESS):
        if not bmdb.has_provided_column(schema, column) and (
            column != bmdb.IP_ADDRESS or _can_be_ip(q)
        ):
            notes.append(f"This BMDB's machine_provided has no {column} column.")
    return notes


def _can_be_ip(q: str) -> bool:
    return bool(_IP_LIKE.match(q)) and ("." in q or ":" in q)


async def search(reader: Reader, schema: Schema, q: str) -> SearchPage:
    """Every kind of thing `q` can name, each kind bounded to LIMIT (+1 to tell "more")."""
    kinds = SearchKinds(
        id_prefix=hex_digits(q) >= MIN_HEX_DIGITS,
        provider_prefix=len(q) >= MIN_PROVIDER_PREFIX,
        ip=_can_be_ip(q),
    )
    doc = await bmdb.search(reader, schema, q, kinds, LIMIT + 1)
    return SearchPage(q=q, groups=_groups(doc, q), notes=_notes(schema, q))


def _respond(request: Request, reader: Reader, page: SearchPage) -> Response:
    status = 404 if page.searched and not page.matches else 200
    return respond(
        request, "templates/search.html", page, reader=reader, status_code=status, help=HELP,
        q=page.q,
    )  # fmt: skip


@router.get(
    urls.SEARCH,
    name="search",
    responses={
        **twin(SearchPage, "matches for a pasted ID, grouped by kind"),
        303: {"description": "exactly one match (HTML only): redirect to it"},
        404: {"model": SearchPage, "description": "nothing matched"},
    },
)
async def search_page(
    request: Request,
    reader: PageReader,
    schema: CurrentSchema,
    q: Annotated[
        str,
        Query(
            max_length=MAX_QUERY,
            description="machine/session ID or hex prefix (≥4 digits), provider ID "
            "(or prefix, ≥3 chars), provider reservation ID, or IP address",
        ),
    ] = "",
):
    """Browsers are redirected to a unique match; `?format=json` always answers the list."""
    text = normalize(q)
    if not text:
        return _respond(request, reader, SearchPage(q="", searched=False))
    if _CONTROL.search(text):
        raise HTTPException(400, "The search text contains control characters; no ID does.")
    page = await search(reader, schema, text)
    if page.redirect is not None and not json_requested(request):
        return RedirectResponse(page.redirect, status_code=303)
    return _respond(request, reader, page)


async def machine_prefix(request: Request, reader: Reader, schema: Schema, text: str) -> Response:
    """/machine/<prefix>: one machine -> 303 to its canonical URL (query kept); several ->
    the search page listing them (LIMIT shown, "more" beyond); none -> 404. A 400 when
    `text` is not a hex prefix of at least MIN_HEX_DIGITS digits."""
    prefix = normalize(text)
    if hex_digits(prefix) < MIN_HEX_DIGITS:
        raise HTTPException(
            400,
            f"{text[:100]!r} is neither a machine ID nor a machine ID prefix: a prefix has at "
            f"least {MIN_HEX_DIGITS} hex digits, such as 3f2504e0. Use the search box for "
            "provider IDs and IP addresses.",
        )
    kinds = SearchKinds(id_prefix=True, provider_prefix=False, ip=False, machines_only=True)
    doc = await bmdb.search(reader, schema, prefix, kinds, LIMIT + 1)
    page = SearchPage(q=prefix[:MAX_QUERY], groups=_groups(doc, prefix))
    if len(page.matches) == 1:
        target = page.matches[0].url
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"{target}{query}", status_code=303)
    return _respond(request, reader, page)
