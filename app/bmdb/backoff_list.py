"""Every backoff (/backoffs): the statement of a page, of a poll and of a CSV page.

One row per `work_backoff` row (at most one per machine and process), active while
`until > now()`; expired ones stay in the table and can be listed too. Each row of a page
carries the digest of its cause's failure signature (app/bmdb/failures.py), computed for
the page's rows only: the group it belongs to on /failures.

Orders (`sort=`): `until` (soonest end first: the default, but for expired backoffs),
`-until` (latest end first: the default for expired ones), `-interval` (longest last
interval first: the machines failing the longest), `interval`, `machine_id`, `-machine_id`.
Rows without an interval come last either way. Keyset pages: app/bmdb/keyset.py. The
counts (total, state tabs, process facet: each under the other filters) are in the same
statement when they are due (app/bmdb/counts.py).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.bmdb.failures import digest_sql, signature_sql
from app.bmdb.filters import like_escape
from app.bmdb.keyset import (
    MACHINE_ID,
    Column,
    Keyset,
)
from app.bmdb.sql import SqlWhere
from app.bmdb.value_checks import check_integer, check_timestamp

SORTS = ("until", "-until", "-interval", "interval", "machine_id", "-machine_id")
STATES = ("active", "expired", "all")
_KEYS = {
    "until": Column("{t}.until", "timestamptz", check_timestamp),
    "interval": Column("{t}.last_interval_seconds", "bigint", check_integer),
    "machine_id": None,
}
TIES = (MACHINE_ID, Column("{t}.process::text", "text"))
ROW = (
    "json_build_object('machine_id', p.machine_id, 'process', p.process, 'until', p.until,"
    " 'cause', p.cause, 'last_interval_seconds', p.last_interval_seconds,"
    f" 'active', p.until > now(), 'failure_digest', {digest_sql(signature_sql('p.cause'))})"
)


class BackoffFilters(BaseModel):
    """The backoff list's filters and order, each a query parameter."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    process: str | None = Field(None, max_length=200, description="the backoff's process")
    state: Literal[STATES] = Field(  # type: ignore[valid-type]
        "active", description="active (until > now()), expired or all"
    )
    text: str | None = Field(
        None,
        max_length=200,
        description="case-insensitive text in the cause (wildcards are literal)",
    )
    sort: Literal[SORTS] | None = Field(  # type: ignore[valid-type]
        None,
        description="until: soonest end first (the default, but for expired backoffs);"
        " -until: latest end first (the default for expired); -interval: longest last"
        " interval first; interval; machine_id; '-' reverses",
    )

    @field_validator("process", "text")
    @classmethod
    def _empty_is_none(cls, text: str | None) -> str | None:
        if text is not None and "\x00" in text:
            raise ValueError("must not contain a NUL character")
        return text or None

    @property
    def order(self) -> str:
        """The order in use: `sort`, or the state's default."""
        return self.sort or ("-until" if self.state == "expired" else "until")

    def active(self) -> list[tuple[str, str]]:
        """The filters in use, as (parameter, value); the state tab says its own."""
        return [(n, v) for n in ("process", "text") if (v := getattr(self, n)) is not None]

    def where(self, params: SqlWhere, *, without: str = "") -> SqlWhere:
        """Conditions on `work_backoff b` (but the one on `without`, for its facet)."""
        where = SqlWhere(params=params.params)
        if self.process is not None and without != "process":
            where.add(f"b.process::text = {where.param(self.process)}")
        if self.state != "all" and without != "state":
            where.add("b.until > now()" if self.state == "active" else "b.until <= now()")
        if self.text is not None:
            pattern = where.param("%" + like_escape(self.text) + "%")
            where.add(f"lower(b.cause) LIKE lower({pattern})")
        return where

    with_clause: ClassVar[str] = ""

    def counts(self, params: SqlWhere) -> str:
        return _counts(self, params)

    def row(self, *, csv: bool = False) -> str:
        return ROW

    def keyset(self) -> Keyset:
        order = self.order
        return Keyset.build(
            order, "work_backoff", "b", TIES,
            key=_KEYS[order.removeprefix("-")],
            descending=order.startswith("-"),
        )  # fmt: skip


def _counts(filters: BackoffFilters, params: SqlWhere) -> str:
    """The total, the state tabs and the process facet, each under the other filters."""
    return (
        "json_build_object("
        f"'total', (SELECT count(*) FROM work_backoff b WHERE {filters.where(params).sql}),"
        " 'states', (SELECT json_build_object("
        "'active', count(*) FILTER (WHERE b.until > now()),"
        " 'expired', count(*) FILTER (WHERE b.until <= now()), 'all', count(*))"
        f" FROM work_backoff b WHERE {filters.where(params, without='state').sql}),"
        " 'processes', (SELECT coalesce(json_agg(json_build_array(g.v, g.n) ORDER BY g.v),"
        " '[]'::json) FROM (SELECT b.process::text AS v, count(*) AS n FROM work_backoff b"
        f" WHERE {filters.where(params, without='process').sql} GROUP BY 1) g))"
    )
