"""The machine list's orders (`sort=`) and their keyset pages.

| sort | key | machines without the key |
|---|---|---|
| `id` (default) | machine_id | (none) |
| `created` | machine_created_at | (none: NOT NULL) |
| `backoff` | the end (`until`) of its soonest-ending *active* backoff | none active |
| `heartbeat` | AgentHeartbeat.agent_heartbeat_at (oldest first) | no heartbeat tag |

`-` before the name reverses the order. Ties are broken by machine_id, in the same
direction. Machines without the key come after every machine with one in BOTH
directions, in machine ID order (ascending, or descending for `-`): the machines that
have the key are what a sort by it is asked for, so they lead either way.

Keyset pages: a page starts after a cursor, the (key, machine_id) of the previous page's
last machine. For `id` the cursor is the machine ID itself (`after=<uuid>`); for the other
orders it is an opaque token (base64url of [sort key name, key as the BMDB wrote it or
null, machine ID]), which keeps the key exact: 'infinity' and microseconds round-trip as
text through `(SELECT $n::text::timestamptz)`.

Plans. Only machines_pkey orders anything (webug adds no index), so:
- `id` walks machines_pkey and stops after a page;
- `created`, `backoff` and `heartbeat` read every row that has the key (machines,
  the active backoffs, machine_agent_heartbeat) and keep the page's top N: a bounded scan
  of one table, at 100k machines tens of milliseconds (docs/using.md, bench/list_orders.py),
  under the statement timeout like any page. The keyed rows are ordered without joining
  `machines` (with it, the page of IDs by heartbeat took 90 ms instead of 18 at 100k):
  filter conditions name only `m.machine_id` (app/bmdb/filters.py), so the key's own
  table is `m` there. The machines without the key are then read off machines_pkey (an anti-join)
  and stop after a page, like `id`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from uuid import UUID

from app.bmdb.filters import SORT_KEYS, FilterError, SqlWhere
from app.bmdb.reflection import Schema
from app.bmdb.tables import HEARTBEAT

# How the page names each order: (its key, ascending, descending).
WORDS = {
    "id": ("machine ID", "ascending", "descending"),
    "created": ("created time", "oldest first", "newest first"),
    "backoff": ("end of the soonest-ending active backoff", "soonest first", "latest first"),
    "heartbeat": ("last heartbeat", "oldest first", "newest first"),
}
# The orders some machines have no key for (they come last).
PARTIAL = frozenset({"backoff", "heartbeat"})


@dataclass(frozen=True)
class Cursor:
    """Where a keyset page starts: after this machine, whose sort key is `key` (the BMDB's
    text of it; None when the machine has none, or in ID order)."""

    key: str | None
    machine_id: UUID


@dataclass(frozen=True)
class _Keyed:
    """How a keyed order reads its key: `source` is a relation aliased `m` with one row per
    machine that has the key, `key` the key's expression on it, `lacks` the condition on
    `machines m` of a machine without it."""

    source: str
    key: str
    key_type: str
    lacks: str | None  # None: every machine has the key


def _keyed(name: str, schema: Schema | None) -> _Keyed:
    if name == "created":
        return _Keyed("machines m", "m.machine_created_at", "timestamptz", None)
    if name == "backoff":
        return _Keyed(
            "(SELECT b.machine_id, min(b.until) AS until FROM work_backoff b"
            " WHERE b.until > now() GROUP BY b.machine_id) m",
            "m.until",
            "timestamptz",
            "NOT EXISTS (SELECT 1 FROM work_backoff b WHERE b.machine_id = m.machine_id"
            " AND b.until > now())",
        )
    assert name == "heartbeat" and schema is not None, "the heartbeat order needs the schema"
    tag = schema.tag(HEARTBEAT)
    field = tag.field("agent_heartbeat_at") if tag is not None else None
    if field is None or field.udt_name not in ("timestamptz", "timestamp"):
        raise FilterError(
            f"sort=heartbeat needs {HEARTBEAT}.agent_heartbeat_at, which this BMDB does not have"
        )
    return _Keyed(
        f"{HEARTBEAT} m",
        "m.agent_heartbeat_at",
        field.udt_name,
        f"NOT EXISTS (SELECT 1 FROM {HEARTBEAT} h WHERE h.machine_id = m.machine_id"
        " AND h.agent_heartbeat_at IS NOT NULL)",
    )


@dataclass(frozen=True)
class Order:
    """One order of the machine list, as `sort=` names it."""

    key: str  # one of SORT_KEYS
    descending: bool = False

    @classmethod
    def parse(cls, sort: str, schema: Schema) -> Order:
        """The order `sort=` names; FilterError when it is none, or when this BMDB lacks
        its key's table."""
        name = sort.removeprefix("-")
        if name not in SORT_KEYS:
            raise FilterError(f"sort must be one of {', '.join(SORT_KEYS)}, '-' for descending")
        order = cls(name, sort.startswith("-"))
        if name != "id":
            _keyed(name, schema)
        return order

    @property
    def sort(self) -> str:
        return ("-" if self.descending else "") + self.key

    @property
    def description(self) -> str:
        """"last heartbeat, oldest first"."""
        what, ascending, descending = WORDS[self.key]
        return f"{what}, {descending if self.descending else ascending}"

    def header(self, key: str) -> Order:
        """The order a column header for `key` links to: this one reversed when it is
        already by `key`, else by `key` ascending."""
        return Order(key, self.key == key and not self.descending)

    @property
    def partial(self) -> bool:
        """Whether machines without the key come last."""
        return self.key in PARTIAL

    # --- cursors --------------------------------------------------------------------------

    def token(self, key: str | None, machine_id: UUID | str) -> str:
        """The `after=` of the page after the machine with this key."""
        if self.key == "id":
            return str(machine_id)
        raw = json.dumps([self.key, key, str(machine_id)], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def cursor(self, token: str) -> Cursor:
        """The cursor an `after=` token stands for; FilterError when it is not one of this
        order's (a 400 that says so)."""
        if self.key == "id":
            try:
                return Cursor(None, UUID(token))
            except ValueError:
                raise FilterError(f"after={token[:80]!r} is not a machine ID") from None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            name, key, machine_id = json.loads(raw)
            if name != self.key or not (key is None or isinstance(key, str)):
                raise ValueError
            return Cursor(key, UUID(machine_id))
        except (ValueError, TypeError, binascii.Error):
            raise FilterError(
                f"after={token[:80]!r} is not a page of sort={self.sort}: follow the page's"
                " links, or leave after= out for the first page"
            ) from None

    # --- SQL ------------------------------------------------------------------------------

    def page_sql(
        self, schema: Schema | None, where: SqlWhere, after: Cursor | None, limit: int
    ) -> str:
        """SQL of one page of the filtered machines in this order: (machine_id, sort_key:
        the key's text for the next cursor, pos: 1, 2, ... in page order). Parameters go
        into `where` (a copy of the filters' own)."""
        direction = " DESC" if self.descending else ""
        after_op = "<" if self.descending else ">"
        n = int(limit)
        if self.key == "id":
            condition = where.sql
            if after is not None:
                condition += f" AND m.machine_id {after_op} {where.param(after.machine_id)}::uuid"
            return (
                "SELECT p.machine_id, NULL::text AS sort_key,"
                f" row_number() OVER (ORDER BY p.machine_id{direction}) AS pos"
                f" FROM (SELECT m.machine_id FROM machines m WHERE {condition}"
                f" ORDER BY m.machine_id{direction} LIMIT {n}) p"
            )
        keyed = _keyed(self.key, schema)
        branches = []
        if after is None or after.key is not None:  # the page starts among the keyed machines
            condition = f"{where.sql} AND {keyed.key} IS NOT NULL"
            if after is not None:
                # A subquery: evaluated once. text -> timestamptz depends on the session's
                # TimeZone, so it is no constant, and as a plain cast it ran once per row.
                key = f"(SELECT {where.param(after.key)}::text::{keyed.key_type})"
                condition += (
                    f" AND ({keyed.key}, m.machine_id) {after_op}"
                    f" ({key}, {where.param(after.machine_id)}::uuid)"
                )
            branches.append(
                f"SELECT m.machine_id, {keyed.key} AS k, 0 AS g"
                f" FROM {keyed.source} WHERE {condition}"
                f" ORDER BY {keyed.key}{direction}, m.machine_id{direction} LIMIT {n}"
            )
        if keyed.lacks is not None:  # then the machines without the key, by ID
            condition = f"{where.sql} AND {keyed.lacks}"
            if after is not None and after.key is None:
                condition += f" AND m.machine_id {after_op} {where.param(after.machine_id)}::uuid"
            branches.append(
                f"SELECT m.machine_id, NULL::{keyed.key_type} AS k, 1 AS g"
                f" FROM machines m WHERE {condition}"
                f" ORDER BY m.machine_id{direction} LIMIT {n}"
            )
        if not branches:  # after a machine without the key, in an order every machine has
            return "SELECT NULL::uuid AS machine_id, NULL::text AS sort_key, 0 AS pos LIMIT 0"
        union = " UNION ALL ".join(f"({b})" for b in branches)
        # The key's text is written for the page only (for 100k rows it costs 40 ms).
        return (
            "SELECT p.machine_id, p.k::text AS sort_key, row_number() OVER"
            f" (ORDER BY p.g, p.k{direction}, p.machine_id{direction}) AS pos"
            f" FROM ({union}) p ORDER BY pos LIMIT {n}"
        )


ID_ORDER = Order("id")
