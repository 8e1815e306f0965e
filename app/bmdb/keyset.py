"""Keyset pages of one table in any order, NULLs last in both directions: what /work,
/backoffs and the tag tables (/tags/{TagName}) share.

An order reads its rows in **parts**, one after the other: each part is a condition on
the rows, and whether its rows are ordered by the sort key or by the tie columns alone.
A sortable key that may be NULL is two parts, the rows with a key first, then those
without (by the ties, in the same direction), so the rows a sort is asked for lead
either way, as in the machine list (app/bmdb/ordering.py). /work puts its stale work
first with two more parts.

A page starts after a **cursor**: the part, the key's text (as the BMDB wrote it) and
the ties of the previous page's last row, carried as an opaque token (base64url of
JSON) that names its order. Each part still to be read is one `SELECT ... ORDER BY ...
LIMIT n` (the cursor's own part starts after the cursor, as a row comparison), and the
page is the first n rows of their UNION ALL. A cursor's values are checked before they
are bound (`Column.check`): a token that was edited is a 400, never a failed cast.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from app.bmdb.connection import Reader
from app.bmdb.sql import SqlWhere, polled
from app.bmdb.value_checks import check_uuid


class CursorError(ValueError):
    """An `after=` token that is not a page of this order: a 400."""


@dataclass(frozen=True)
class Column:
    """An expression of the source's rows, the SQL type a cursor's text of it is cast
    back to, and the check of that text (raises ValueError when it is no such value)."""

    expr: str
    type: str
    check: Callable[[str], object] = str


MACHINE_ID = Column("{t}.machine_id", "uuid", check_uuid)


@dataclass(frozen=True)
class Part:
    condition: str  # on the source's alias
    keyed: bool  # ordered by the key (and the ties), else by the ties alone


@dataclass(frozen=True)
class Cursor:
    part: int
    key: str | None
    ties: tuple[str, ...]


@dataclass(frozen=True)
class Keyset:
    """One order of one source: `sort` names it (its cursors carry the name)."""

    sort: str
    source: str  # a table or a WITH query, e.g. `work_backoff`
    alias: str  # the source's alias in every expression, e.g. `b`
    ties: tuple[Column, ...]  # unique together: the last words of the order
    parts: tuple[Part, ...]
    key: Column | None = None  # None: ordered by the ties alone
    descending: bool = False

    @classmethod
    def build(
        cls,
        sort: str,
        source: str,
        alias: str,
        ties: tuple[Column, ...],
        *,
        key: Column | None = None,
        nullable: bool = True,
        groups: tuple[str, ...] = ("TRUE",),
        descending: bool = False,
    ) -> Keyset:
        """An order by `key` (NULLs last) then the ties, or by the ties alone; `groups`:
        conditions whose rows come one group after the other (stale work first)."""
        parts = []
        for group in groups:
            if key is None:
                parts.append(Part(group, False))
                continue
            expr = key.expr.replace("{t}", alias)
            parts.append(Part(f"{group} AND {expr} IS NOT NULL", True))
            if nullable:
                parts.append(Part(f"{group} AND {expr} IS NULL", False))
        return cls(sort, source, alias, ties, tuple(parts), key, descending)

    def _expr(self, column: Column) -> str:
        return column.expr.replace("{t}", self.alias)

    # --- cursors ------------------------------------------------------------------------

    def token(self, cursor: Cursor) -> str:
        """The `after=` of the page that starts after `cursor`."""
        raw = json.dumps(
            [self.sort, cursor.part, cursor.key, list(cursor.ties)], separators=(",", ":")
        )
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def cursor(self, token: str) -> Cursor:
        """The cursor an `after=` token stands for; CursorError when it is none of this
        order's, or holds a value its column cannot have."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            sort, part, key, ties = json.loads(raw)
            if sort != self.sort or not isinstance(part, int) or not 0 <= part < len(self.parts):
                raise ValueError
            keyed = self.parts[part].keyed
            if keyed != isinstance(key, str) or len(ties) != len(self.ties):
                raise ValueError
            if keyed:
                assert self.key is not None
                self.key.check(key)
            for column, value in zip(self.ties, ties, strict=True):
                if not isinstance(value, str):
                    raise ValueError
                column.check(value)
            return Cursor(part, key, tuple(ties))
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            raise CursorError(
                f"after={token[:80]!r} is not a page of sort={self.sort}: follow the page's"
                " links, or leave after= out for the first page"
            ) from None

    # --- SQL ------------------------------------------------------------------------------

    def page_sql(self, where: SqlWhere, after: Cursor | None, limit: int) -> str:
        """SQL of one page of the rows that `where` (conditions on the alias) selects, in
        this order: every column of the source, then `keyset_part`, `keyset_key` (the
        key's text), `keyset_ties` (a JSON array of the ties' text) and `keyset_pos` (1,
        2, ... in page order). Cursor values are bound into `where`."""
        direction = " DESC" if self.descending else ""
        after_op = "<" if self.descending else ">"
        ties = [self._expr(c) for c in self.ties]
        key_type = self.key.type if self.key is not None else "text"
        n = int(limit)
        branches = []
        for i, part in enumerate(self.parts):
            if after is not None and i < after.part:
                continue  # read before the cursor
            assert self.key is not None or not part.keyed
            key = self._expr(self.key) if part.keyed else f"NULL::{key_type}"  # type: ignore[arg-type]
            ordered = [key, *ties] if part.keyed else ties
            condition = f"{where.sql} AND {part.condition}"
            if after is not None and i == after.part:
                # The key's cast in a subquery: evaluated once (text -> timestamptz depends
                # on the session's TimeZone, so it is no constant folded at planning).
                bound = []
                if part.keyed:
                    bound.append(f"(SELECT {where.param(after.key)}::text::{key_type})")
                bound += [
                    f"{where.param(value)}::text::{column.type}"
                    for column, value in zip(self.ties, after.ties, strict=True)
                ]
                condition += f" AND ({', '.join(ordered)}) {after_op} ({', '.join(bound)})"
            tie_columns = "".join(f", {t} AS keyset_tie{j}" for j, t in enumerate(ties))
            branches.append(
                f"SELECT {self.alias}.*, {i} AS keyset_part, {key} AS keyset_k{tie_columns}"
                f" FROM {self.source} {self.alias} WHERE {condition}"
                f" ORDER BY {', '.join(o + direction for o in ordered)} LIMIT {n}"
            )
        union = " UNION ALL ".join(f"({b})" for b in branches)
        order = ", ".join(
            ["p.keyset_part", f"p.keyset_k{direction}"]
            + [f"p.keyset_tie{j}{direction}" for j in range(len(ties))]
        )
        tie_texts = ", ".join(f"p.keyset_tie{j}::text" for j in range(len(ties)))
        return (
            "SELECT p.*, p.keyset_k::text AS keyset_key,"
            f" json_build_array({tie_texts}) AS keyset_ties,"
            f" row_number() OVER (ORDER BY {order}) AS keyset_pos"
            f" FROM ({union}) p ORDER BY keyset_pos LIMIT {n}"
        )


def cursor_of(row: list) -> Cursor:
    """The Cursor after a row, from its [keyset_part, keyset_key, keyset_ties]."""
    part, key, ties = row
    return Cursor(part, key, tuple(ties))


# --- statements -------------------------------------------------------------------------


def rows_sql(keyset: Keyset, where: SqlWhere, after: Cursor | None, limit: int, row: str) -> str:
    """SQL of one column `doc`: the page as a JSON array of [`row` (a JSON expression on
    the page's rows, `p`), its cursor]."""
    return (
        "SELECT coalesce(json_agg(json_build_array("
        f"{row}, json_build_array(p.keyset_part, p.keyset_key, p.keyset_ties))"
        " ORDER BY p.keyset_pos), '[]'::json) AS doc"
        f" FROM ({keyset.page_sql(where, after, limit)}) p"
    )


def list_sql(
    keyset: Keyset,
    where: SqlWhere,
    after: Cursor | None,
    limit: int,
    row: str,
    *,
    counts: str,
    with_counts: bool,
    known_ptag: str | None,
    with_: str = "",
) -> str:
    """A live list's statement: (ptag: md5 of the page's document, doc: the page as
    `rows_sql` has it, or NULL when its md5 is `known_ptag`, counts: the `counts`
    expression when `with_counts`, else NULL). `with_`: a WITH clause the source reads.

    Whether the counts are due is a bound value, not a change of the SQL: a page and its
    polls run one prepared statement, one round trip each (PostgreSQL runs the subqueries
    of a CASE branch not taken never)."""
    document = rows_sql(keyset, where, after, limit, row)
    known = f"{where.param(known_ptag)}::text"
    due = f"{where.param(with_counts)}::bool"
    return (
        f"{with_}SELECT polled.ptag, polled.doc, CASE WHEN {due} THEN {counts} END AS counts"
        f" FROM ({polled(document, known)}) polled"
    )


class ListQuery(Protocol):
    """What a list's filters give its statements (app/bmdb/work_list.py, backoff_list.py,
    tag_tables.py)."""

    with_clause: str  # a WITH clause the source reads ("" for a table)

    def where(self, params: SqlWhere) -> SqlWhere: ...  # conditions, bound into `params`

    def keyset(self) -> Keyset: ...  # the order

    def counts(self, params: SqlWhere) -> str: ...  # the counts document's expression

    def row(self, *, csv: bool = False) -> str: ...  # a page row's JSON expression on `p`


def list_statement(
    query: ListQuery,
    *,
    after: Cursor | None,
    limit: int,
    with_counts: bool,
    known_ptag: str | None,
) -> tuple[str, list[object]]:
    """A live list's statement (`list_sql`) and its parameters."""
    params = SqlWhere()
    counts = query.counts(params)
    where = query.where(params)
    sql = list_sql(
        query.keyset(), where, after, limit, query.row(),
        counts=counts, with_counts=with_counts, known_ptag=known_ptag,
        with_=query.with_clause,
    )  # fmt: skip
    return sql, params.params


def page_statement(
    query: ListQuery, *, after: Cursor | None, limit: int
) -> tuple[str, list[object]]:
    """A page and nothing else (a CSV's) and its parameters."""
    where = query.where(SqlWhere())
    rows = rows_sql(query.keyset(), where, after, limit, query.row(csv=True))
    return query.with_clause + rows, where.params


@dataclass
class ListRead:
    ptag: str  # md5 of the page's document
    rows: list[tuple[object, Cursor]] | None  # (row, its cursor); None: unchanged
    counts: object  # the counts document, when they were due


async def read_list(reader: Reader, sql: str, params: list[object]) -> ListRead:
    row = await reader.fetchrow(sql, *params, plan_per_values=bool(params))
    doc = reader.parse(row["doc"])
    rows = None if doc is None else [(r, cursor_of(c)) for r, c in doc]
    return ListRead(row["ptag"], rows, reader.parse(row["counts"]))


async def read_rows(
    reader: Reader, sql: str, params: list[object]
) -> list[tuple[object, Cursor]]:
    """A page of `rows_sql` (a CSV's)."""
    doc = reader.parse(await reader.fetchval(sql, *params, plan_per_values=bool(params)))
    return [(r, cursor_of(c)) for r, c in doc]
