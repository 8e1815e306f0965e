"""Search (/search?q=): hot links from whatever ID an operator pasted from chat or an alert.

One match -> 303 to it; several -> the list, grouped by kind; none -> 404 "nothing found".
Also `resolve_machine_prefix` + `render_matches` for /machine/<prefix> (machine_detail).

Data: app.bmdb.search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Literal
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel

from app.bmdb import search as repository
from app.bmdb.connection import Snapshot
from app.bmdb.reflection import Schema
from app.pages.json_models import QueryJSON, twin
from app.render.templating import CurrentSchema, PageSnapshot, current_schema, render, wants_json

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


@dataclass(frozen=True)
class Match:
    kind: str
    id: UUID  # the machine's or the session's
    label: str  # what the row is (provider identity, session component)
    matched: str  # the value that matched the query
    exact: bool  # the whole value matched, not a prefix

    @property
    def url(self) -> str:
        return f"/{'session' if self.kind == 'session' else 'machine'}/{self.id}"


@dataclass
class Group:
    kind: str
    matches: list[Match]
    more: bool  # more than LIMIT matched; only the first LIMIT are listed
    more_url: str | None = None  # a page that lists them all, when there is one

    @property
    def title(self) -> str:
        return KIND_TITLES[self.kind]


@dataclass
class SearchResult:
    q: str
    groups: list[Group] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why some kinds were not searched

    @property
    def matches(self) -> list[Match]:
        return [m for g in self.groups for m in g.matches]

    @property
    def target(self) -> str | None:
        """Where to send the browser: the one thing that matched, or the one exact match.

        Exact matches win over prefix matches, so a pasted full provider ID opens its
        machine even when longer provider IDs start with it.
        """
        urls = {m.url for m in self.matches}  # a truncated kind alone lists LIMIT of them
        if len(urls) == 1:
            return urls.pop()
        exact = {m.url for m in self.matches if m.exact}
        return exact.pop() if len(exact) == 1 else None


class SearchMatchJSON(BaseModel):
    kind: Kind
    id: UUID
    url: str
    label: str
    matched: str
    exact: bool


class SearchJSON(BaseModel):
    q: str
    redirect: str | None  # where the HTML page redirects a browser (303); JSON never redirects
    matches: list[SearchMatchJSON]  # grouped by kind, in the order of `kinds`
    truncated: list[Kind]  # kinds with more than `limit` matches (only `limit` listed)
    limit: int
    notes: list[str]
    queries: list[QueryJSON] = []


def search_json(result: SearchResult) -> SearchJSON:
    return SearchJSON(
        q=result.q,
        redirect=result.target,
        matches=[
            SearchMatchJSON(
                kind=m.kind, id=m.id, url=m.url, label=m.label, matched=m.matched, exact=m.exact
            )
            for m in result.matches
        ],
        truncated=[g.kind for g in result.groups if g.more],
        limit=LIMIT,
        notes=result.notes,
    )


def normalize(q: str) -> str:
    return q.strip(_PASTE_NOISE)


def hex_digits(text: str) -> int:
    """How many hex digits `text` has if it can be a UUID prefix, else 0."""
    if not _HEX_ID.match(text):
        return 0
    digits = len(text.replace("-", ""))
    return digits if digits <= 32 and len(text) <= 36 else 0


def is_id_prefix(text: str) -> bool:
    return hex_digits(text) >= MIN_HEX_DIGITS


def list_url(q: str) -> str:
    """The machine list filtered by machine ID or provider ID prefix: all of a long list."""
    return "/?" + urlencode({"q": q})


def provider_label(p: repository.Provided | None) -> str:
    if p is None:
        return "not provided"
    parts = [f"{p.provider} {p.provider_id}"]
    if p.reservation_id:
        parts.append(f"reservation {p.reservation_id}")
    if p.ip_address:
        parts.append(f"IP {p.ip_address}")
    return " · ".join(parts)


def _group(kind: str, matches: list[Match], more_url: str | None = None) -> Group | None:
    if not matches:
        return None
    more = len(matches) > LIMIT
    return Group(kind, matches[:LIMIT], more, more_url if more else None)


async def machine_id_group(
    snap: Snapshot, schema: Schema, text: str, ids: list[UUID]
) -> Group | None:
    provided = await repository.provided_for(snap, schema, ids[:LIMIT])
    exact = hex_digits(text) == 32
    matches = [Match("machine", i, provider_label(provided.get(i)), str(i), exact) for i in ids]
    return _group("machine", matches, None if exact else list_url(text))


async def search(snap: Snapshot, schema: Schema, q: str) -> SearchResult:
    """Every kind of thing `q` can name, each kind bounded to LIMIT (+1 to tell "more")."""
    result = SearchResult(q)
    groups: list[Group | None] = []
    digits = hex_digits(q)
    if digits >= MIN_HEX_DIGITS:
        ids = await repository.machines_by_id_prefix(snap, q, LIMIT + 1)
        groups.append(await machine_id_group(snap, schema, q, ids))
        sessions = await repository.sessions_by_id_prefix(snap, q, LIMIT + 1)
        groups.append(
            _group(
                "session",
                [
                    Match(
                        "session",
                        s.session_id,
                        f"{s.component or '?'} · {'alive' if s.alive else 'expired'}",
                        str(s.session_id),
                        digits == 32,
                    )
                    for s in sessions
                ],
            )
        )
    elif digits:
        result.notes.append(
            f"Machine and session ID prefixes need at least {MIN_HEX_DIGITS} hex digits."
        )
    if repository.provided_tag(schema) is None:
        result.notes.append("This BMDB has no machine_provided table: no provider IDs or IPs.")
    else:
        prefix = len(q) >= MIN_PROVIDER_PREFIX
        if not prefix:
            result.notes.append(
                f"Provider ID prefixes need at least {MIN_PROVIDER_PREFIX} characters;"
                " only exact provider IDs were looked up."
            )
        hits = await repository.machines_by_provider_id(
            snap, schema, q, prefix=prefix, limit=LIMIT + 1
        )
        matches = [
            Match("provider_id", p.machine_id, provider_label(p), p.provider_id, p.provider_id == q)
            for p in hits
        ]
        groups.append(_group("provider_id", matches, list_url(q)))
        for kind, column in (
            ("reservation_id", repository.RESERVATION),
            ("ip", repository.IP_ADDRESS),
        ):
            if kind == "ip" and not (_IP_LIKE.match(q) and ("." in q or ":" in q)):
                continue  # an unindexed column: only scanned for what can be an address
            if not repository.has_provided_column(schema, column):
                result.notes.append(f"This BMDB's machine_provided has no {column} column.")
                continue
            hits = await repository.machines_by_provided_value(snap, schema, column, q, LIMIT + 1)
            matches = [Match(kind, p.machine_id, provider_label(p), q, True) for p in hits]
            groups.append(_group(kind, matches))
    result.groups = [g for g in groups if g is not None]
    return result


def _render(request: Request, snap: Snapshot, result: SearchResult | None, q: str) -> Response:
    status = 404 if result is not None and not result.matches else 200
    return render(
        request,
        "templates/search.html",
        {"q": q, "result": result, "help": HELP, "limit": LIMIT},
        snap=snap,
        status_code=status,
        data=lambda: search_json(result or SearchResult(q)),
    )


@router.get(
    "/search",
    name="search",
    responses={
        **twin(SearchJSON, "matches for a pasted ID, grouped by kind"),
        303: {"description": "exactly one match (HTML only): redirect to it"},
        404: {"model": SearchJSON, "description": "nothing matched"},
    },
)
async def search_page(
    request: Request,
    snap: PageSnapshot,
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
        return _render(request, snap, None, "")
    if _CONTROL.search(text):
        raise HTTPException(400, "The search text contains control characters; no ID does.")
    result = await search(snap, schema, text)
    target = result.target
    if target is not None and not wants_json(request):
        return RedirectResponse(target, status_code=303)
    return _render(request, snap, result, text)


async def resolve_machine_prefix(snap: Snapshot, text: str) -> UUID | list[UUID] | None:
    """The machine(s) whose ID starts with `text`, for /machine/<prefix>.

    One machine -> its ID; several -> up to LIMIT + 1 IDs (render_matches says "more");
    none -> None. Raises HTTPException(400) when `text` is not a hex prefix of at least
    MIN_HEX_DIGITS digits.
    """
    prefix = normalize(text)
    if not is_id_prefix(prefix):
        raise HTTPException(
            400,
            f"{text[:100]!r} is neither a machine ID nor a machine ID prefix: a prefix has at "
            f"least {MIN_HEX_DIGITS} hex digits, such as 3f2504e0. Use the search box for "
            "provider IDs and IP addresses.",
        )
    ids = await repository.machines_by_id_prefix(snap, prefix, LIMIT + 1)
    if not ids:
        return None
    return ids[0] if len(ids) == 1 else ids


async def render_matches(
    request: Request, snap: Snapshot, q: str, matches: UUID | list[UUID] | None
) -> Response:
    """The search page listing the machines `matches` (resolve_machine_prefix's answer)
    for the prefix `q`: 200 with the list (LIMIT shown, "more" beyond), 404 when none.
    """
    prefix = normalize(q)[:MAX_QUERY]
    ids = [matches] if isinstance(matches, UUID) else list(matches or [])
    result = SearchResult(prefix)
    group = await machine_id_group(snap, await current_schema(request), prefix, ids)
    if group is not None:
        result.groups.append(group)
    return _render(request, snap, result, prefix)
