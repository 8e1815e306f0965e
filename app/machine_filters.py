"""The machine list's filters: parsed from the query string, turned into SQL.

The URL is the state: every filter is a query parameter, so a filtered view can be
pasted into chat. Conditions are EXISTS subqueries on the machine (`m`), so they
combine freely and never multiply rows; values are always bound parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from urllib.parse import urlencode
from uuid import UUID

from app.reflection import Schema, quote_ident

PROVIDED = "machine_provided"
NULL_STATUS = "NULL"  # how the query string names "provider_status IS NULL"
_HEX_PREFIX = re.compile(r"^[0-9a-fA-F-]{1,36}$")


class FilterError(ValueError):
    """A filter value that cannot mean anything (unknown tag, bad prefix): a 400."""


@dataclass(frozen=True)
class MachineFilters:
    provider: str | None = None
    status: str | None = None
    location: str | None = None
    has: tuple[str, ...] = ()  # tag names the machine must have
    lacks: tuple[str, ...] = ()  # tag names it must not have
    work: str | None = None  # process with work on the machine
    backoff: str | None = None  # process with an active backoff
    stale: bool = False  # only machines with work held by an expired session
    q: str | None = None  # machine ID prefix or provider ID prefix

    def active(self) -> list[tuple[str, str]]:
        """(parameter, value) pairs of the filters in use, for chips and links."""
        pairs = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                pairs += [(f.name, v) for v in value]
            elif value is True:
                pairs.append((f.name, "1"))
            elif value:
                pairs.append((f.name, value))
        return pairs

    def query(self, **extra: object) -> str:
        """The query string for these filters plus `extra` (None values dropped)."""
        pairs = self.active() + [(k, str(v)) for k, v in extra.items() if v is not None]
        return urlencode(pairs)

    def without(self, name: str, value: str) -> MachineFilters:
        current = getattr(self, name)
        if isinstance(current, tuple):
            return _replace(self, name, tuple(v for v in current if v != value))
        return _replace(self, name, False if isinstance(current, bool) else None)

    def with_(self, name: str, value: str) -> MachineFilters:
        current = getattr(self, name)
        if isinstance(current, tuple):
            return _replace(self, name, current if value in current else (*current, value))
        return _replace(self, name, True if isinstance(current, bool) else value)


def _replace(filters: MachineFilters, name: str, value: object) -> MachineFilters:
    return MachineFilters(
        **{**{f.name: getattr(filters, f.name) for f in fields(filters)}, name: value}
    )


@dataclass
class SqlWhere:
    """WHERE conditions on `machines m` with their positional parameters."""

    conditions: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)

    def param(self, value: object) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def add(self, condition: str) -> None:
        self.conditions.append(condition)

    @property
    def sql(self) -> str:
        return " AND ".join(self.conditions) if self.conditions else "TRUE"


def uuid_prefix_range(prefix: str) -> tuple[UUID, UUID] | None:
    """The UUID range a hex prefix covers (an index range scan, not a LIKE on text)."""
    digits = prefix.replace("-", "").lower()
    if not digits or len(digits) > 32 or not _HEX_PREFIX.match(prefix):
        return None
    return UUID(digits.ljust(32, "0")), UUID(digits.ljust(32, "f"))


def _like_prefix(text: str) -> str:
    return re.sub(r"([\\%_])", r"\\\1", text) + "%"


def build_where(filters: MachineFilters, schema: Schema) -> SqlWhere:
    where = SqlWhere()
    provided = _provided_conditions(filters, where)
    if provided:
        if schema.tag(PROVIDED) is None:
            raise FilterError("this BMDB has no machine_provided tag table")
        where.add(
            f"EXISTS (SELECT 1 FROM machine_provided p WHERE p.machine_id = m.machine_id"
            f" AND {' AND '.join(provided)})"
        )
    for names, negate in ((filters.has, False), (filters.lacks, True)):
        for name in names:
            tag = schema.tag(name)
            if tag is None:
                raise FilterError(f"no tag type {name!r} in this BMDB")
            where.add(
                f"{'NOT ' if negate else ''}EXISTS (SELECT 1 FROM {quote_ident(tag.table)} t"
                " WHERE t.machine_id = m.machine_id)"
            )
    if filters.work:
        where.add(
            "EXISTS (SELECT 1 FROM work w WHERE w.machine_id = m.machine_id"
            f" AND w.process::text = {where.param(filters.work)})"
        )
    if filters.backoff:
        where.add(
            "EXISTS (SELECT 1 FROM work_backoff b WHERE b.machine_id = m.machine_id"
            f" AND b.process::text = {where.param(filters.backoff)} AND b.until > now())"
        )
    if filters.stale:
        where.add(
            "EXISTS (SELECT 1 FROM work w JOIN sessions s ON s.session_id = w.session_id"
            " WHERE w.machine_id = m.machine_id AND s.session_deadline <= now())"
        )
    if filters.q:
        where.add(_id_or_provider_prefix(filters.q.strip(), where, schema))
    return where


def _provided_conditions(filters: MachineFilters, where: SqlWhere) -> list[str]:
    conditions = []
    if filters.provider:
        conditions.append(f"p.provider::text = {where.param(filters.provider)}")
    if filters.status == NULL_STATUS:
        conditions.append("p.provider_status IS NULL")
    elif filters.status:
        conditions.append(f"p.provider_status::text = {where.param(filters.status)}")
    if filters.location:
        conditions.append(f"p.provider_location = {where.param(filters.location)}")
    return conditions


def _id_or_provider_prefix(q: str, where: SqlWhere, schema: Schema) -> str:
    alternatives = []
    if bounds := uuid_prefix_range(q):
        low, high = where.param(bounds[0]), where.param(bounds[1])
        alternatives.append(f"m.machine_id BETWEEN {low}::uuid AND {high}::uuid")
    if schema.tag(PROVIDED) is not None:
        alternatives.append(
            "EXISTS (SELECT 1 FROM machine_provided p WHERE p.machine_id = m.machine_id"
            f" AND p.provider_id LIKE {where.param(_like_prefix(q))})"
        )
    if not alternatives:
        raise FilterError(f"{q!r} is neither a machine ID prefix nor a provider ID prefix")
    return "(" + " OR ".join(alternatives) + ")"
