"""Search as pages share it: everything a pasted ID or text names, in one statement
(app/bmdb/search.py), as groups of matches by kind, and where a browser goes from there.

One ID (or prefix, provider ID, reservation ID, IP address) is looked up whole, prefixes
included. Any text, up to MAX_QUERY (an alert, log lines, JSON), is also searched for
every machine ID, session ID, provider ID, reservation ID and IP address in it, exactly
and in any letter case (app/model/paste.py finds the candidates). /search and
/machine/<prefix> show the result.
"""

from __future__ import annotations

import re
from typing import Literal
from uuid import UUID

from fastapi import HTTPException, Request
from fastapi.responses import Response
from pydantic import Field, computed_field

from app.bmdb import search as bmdb
from app.bmdb import tables
from app.bmdb.connection import Reader
from app.bmdb.reflection import Schema
from app.bmdb.search import Pasted, SearchKinds
from app.bmdb.watch import MAX_IDS
from app.model import paste
from app.model.entities import Model, PageModel
from app.model.ids import MIN_HEX_DIGITS, hex_digits, normalize, parse_tokens
from app.render import urls
from app.render.templating import respond

MAX_QUERY = 16 * 1024  # bytes of text (UTF-8): an alert, a screen of log lines
MAX_ID = 200  # a text this long without white space is looked up whole too (one ID)
LIMIT = 50  # matches listed per kind
PASTED_LIMIT = MAX_IDS + 1  # matches read per kind of what a text names (a watch list's)
MIN_PROVIDER_PREFIX = 3  # shortest provider ID prefix
UUID_DIGITS = 32
_IP_LIKE = re.compile(r"^[0-9a-fA-F.:%/\[\]]+$")  # IPv4, IPv6 (zone, brackets), CIDR

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
    "reservation ID, or an IP address. One match opens it; several are listed. "
    "Or paste any text up to 16 KiB (an alert, log lines, JSON): every machine, session, "
    "provider and reservation ID and IP address in it is looked up; the machines it names "
    "open as a watch list."
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
    pasted: bool = False  # free text, not one ID: searched only for what it names exactly
    # The machines the text names exactly, in the text's order, up to a watch list's
    # MAX_IDS; `named_by` distinct values of the text named them.
    machines: list[UUID] = []
    machines_more: bool = False  # more than MAX_IDS
    named_by: int = Field(default=0, exclude=True)
    # A query that is a list of several machine IDs or prefixes: exactly those, which the
    # watch list resolves (and says which name no machine, or several).
    watch_ids: list[str] = []

    @computed_field
    @property
    def watch_url(self) -> str | None:
        """The watch list of the IDs given, or of the machines found when there are
        several."""
        if self.watch_ids:
            return urls.watch(self.watch_ids)
        return urls.watch(self.machines, self.machines_more) if len(self.machines) > 1 else None

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
        match, or the watch list of the machines a text names. Exact matches win over
        prefix matches, so a pasted full provider ID opens its machine even when longer
        provider IDs start with it. A list of IDs: its watch list. JSON never redirects."""
        if self.watch_ids:
            return self.watch_url
        targets = {m.url for m in self.matches}  # a truncated kind alone lists LIMIT of them
        if len(targets) == 1:
            return targets.pop()
        exact = {m.url for m in self.matches if m.exact}
        if len(exact) == 1:
            return exact.pop()
        # A text naming several machines (not one value matching several: a shared IP,
        # a prefix) and no session: watch them. With sessions too, the list links both.
        if self.named_by > 1 and not any(m.kind == "session" for m in self.matches):
            return self.watch_url
        return None


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


def _session_label(component: str | None, alive: bool) -> str:
    return f"{component or '?'} · {'alive' if alive else 'expired'}"


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
                    label=_session_label(component, alive),
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


def _pasted_matches(doc: dict, found: paste.Candidates) -> list[Match]:
    """Exact matches of what a text names, from the document's "pasted_*" entries."""
    matches = [
        Match(kind="machine", id=i, label=provider_label(p), matched=i, exact=True)
        for i, p in doc.get("pasted_machine", ())
    ]
    matches += [
        Match(kind="session", id=i, label=_session_label(component, alive), matched=i,
              exact=True)
        for i, component, alive in doc.get("pasted_session", ())
    ]  # fmt: skip
    for i, provided in doc.get("pasted_provided", ()):
        _, provider_id, reservation, ip = provided
        for kind, value, among in (
            ("provider_id", provider_id, found.words),
            ("reservation_id", reservation, found.words),
            ("ip", ip, found.ips),
        ):
            if value is not None and value.lower() in among:
                matches.append(
                    Match(kind=kind, id=i, label=provider_label(provided), matched=value,
                          exact=True)
                )  # fmt: skip
    return matches


def _merge(groups: list[Group], pasted: list[Match], cut: set[str]) -> list[Group]:
    """`groups` with the matches of a pasted text each kind lacks, kinds in KIND_TITLES'
    order; `cut`: kinds whose pasted matches stopped at PASTED_LIMIT."""
    old = {g.kind: g for g in groups}
    by_kind: dict[str, list[Match]] = {k: list(old[k].matches) if k in old else []
                                       for k in KIND_TITLES}  # fmt: skip
    for m in pasted:
        if all(seen.id != m.id for seen in by_kind[m.kind]):
            by_kind[m.kind].append(m)
    return [
        Group(
            kind=kind,
            matches=matches[:LIMIT],
            more=len(matches) > LIMIT or kind in cut or (kind in old and old[kind].more),
            more_url=old[kind].more_url if kind in old else None,
        )
        for kind, matches in by_kind.items()
        if matches
    ]


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
        if not schema.has_field(tables.PROVIDED, column) and (
            column != bmdb.IP_ADDRESS or _can_be_ip(q)
        ):
            notes.append(f"This BMDB's machine_provided has no {column} column.")
    return notes


def _can_be_ip(q: str) -> bool:
    return bool(_IP_LIKE.match(q)) and ("." in q or ":" in q)


def is_one_id(text: str) -> bool:
    """Whether `text` can be one ID (looked up whole, prefixes too): short, no white space."""
    return len(text) <= MAX_ID and not any(c.isspace() for c in text)


def id_list(q: str) -> list[str] | None:
    """The tokens of a query that lists several machine IDs or prefixes (separated by
    white space, commas or semicolons, any case), up to a watch list's MAX_IDS; else None."""
    tokens = parse_tokens([q])
    if not 2 <= len(tokens) <= MAX_IDS or any(hex_digits(t) < MIN_HEX_DIGITS for t in tokens):
        return None
    return tokens


async def search(reader: Reader, schema: Schema, q: str) -> SearchPage:
    """Every kind of thing `q` can name whole, each kind bounded to LIMIT (+1 to tell
    "more"), and everything the text names, each kind bounded to PASTED_LIMIT.

    A list of several IDs with a prefix among them is the watch list of exactly those
    (its page resolves the prefixes); a list of full IDs too, unless one is a session's."""
    tokens = id_list(q)
    if tokens is not None and any(hex_digits(t) < UUID_DIGITS for t in tokens):
        return SearchPage(q=q, pasted=True, watch_ids=tokens)
    whole = is_one_id(q)
    kinds = SearchKinds(
        id_prefix=whole and hex_digits(q) >= MIN_HEX_DIGITS,
        provider_prefix=whole and len(q) >= MIN_PROVIDER_PREFIX,
        ip=whole and _can_be_ip(q),
        whole_text=whole,
    )
    found = paste.extract(q)
    lookup = (
        Pasted(list(found.ids), list(found.words), list(found.ips), PASTED_LIMIT)
        if found else None
    )  # fmt: skip
    doc = await bmdb.search(reader, schema, q, kinds, LIMIT + 1, lookup)
    pasted = _pasted_matches(doc, found)
    cut = {kind for key, kind in PASTED_KINDS.items() if len(doc.get(key, ())) >= PASTED_LIMIT}
    groups = _merge(_groups(doc, q) if whole else [], pasted, cut)
    named = [m for g in groups for m in g.matches if m.exact and m.kind != "session"]
    named += [m for m in pasted if m.kind != "session"]  # those past LIMIT too
    named.sort(key=lambda m: found.position(str(m.matched)))
    machines = list(dict.fromkeys(m.id for m in named))
    sessions = any(m.kind == "session" for g in groups for m in g.matches)
    return SearchPage(
        q=q, groups=groups, notes=_notes(schema, q) if whole else [_looked_for(found)],
        pasted=not whole, machines=machines[:MAX_IDS], machines_more=len(machines) > MAX_IDS,
        named_by=len({(m.kind, str(m.matched).lower()) for m in named}),
        watch_ids=tokens if tokens is not None and not sessions else [],
    )  # fmt: skip


# Each "pasted_*" entry of the search document, and the kind a cut there leaves short.
PASTED_KINDS = {
    "pasted_machine": "machine",
    "pasted_session": "session",
    "pasted_provided": "provider_id",
}


def _looked_for(found: paste.Candidates) -> str:
    def count(n: int, what: str) -> str:
        return f"{n} {what}{'s' if n != 1 else ''}"

    return (
        f"Looked up {count(len(found.ids), 'ID')} as machine and session IDs,"
        f" {count(len(found.ips), 'form')} of IP addresses and"
        f" {count(len(found.words), 'word')} of the text as provider and reservation IDs,"
        " in any letter case."
    )


def search_response(request: Request, reader: Reader, page: SearchPage) -> Response:
    """The search page for `page`: a 404 when a search found nothing."""
    status = 404 if page.searched and not page.matches and not page.watch_ids else 200
    return respond(
        request, "templates/search.html", page, reader=reader, status_code=status, help=HELP,
        q="" if page.pasted else page.q, max_query=MAX_QUERY,
    )  # fmt: skip


async def machine_prefix(reader: Reader, schema: Schema, text: str) -> SearchPage:
    """The machines whose IDs start with `text` (LIMIT listed, "more" beyond); a 400 when
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
    return SearchPage(q=prefix[:MAX_QUERY], groups=_groups(doc, prefix))
