"""The machine list's orders and text search under EXPLAIN ANALYZE, on a seeded BMDB.

    python -m app seed --dsn DSN --machines 100000
    python bench/list_orders.py --dsn DSN [--runs 5]

For every order (`sort=`, both directions), a first page, a page deep among the machines
with the key and a page among the machines without it, with no filter, a filter and a
text search: webug's own list statement (app/bmdb/machines.py `list_statement`, page of
101 machines with their documents, no total), run with webug's session settings. Printed:
the median planning + execution time of `--runs` EXPLAIN (ANALYZE, TIMING OFF), and the
tables read whole (Seq Scan). Then the text search's statements: the page with its
total, and the facets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.bmdb import machines as bmdb  # noqa: E402
from app.bmdb.connection import POSTGRESQL_SESSION  # noqa: E402
from app.bmdb.filters import SORT_KEYS, MachineFilters, SqlWhere, build_where  # noqa: E402
from app.bmdb.ordering import Cursor, Order  # noqa: E402
from app.bmdb.reflection import reflect  # noqa: E402
from app.render.tag_hints import summary_fields  # noqa: E402

FILTERS = {
    "no filter": MachineFilters(),
    "provider+status": MachineFilters(provider="Equinix", status="Running"),
    "text=refused": MachineFilters(text="refused"),
}


def seq_scans(plan: dict) -> set[str]:
    found = set()
    if plan.get("Node Type") == "Seq Scan":
        found.add(plan["Relation Name"])
    for child in plan.get("Plans", ()):
        found |= seq_scans(child)
    return found


async def explain(conn: asyncpg.Connection, sql: str, params: list, runs: int) -> tuple:
    times, scans = [], set()
    for _ in range(runs):
        raw = await conn.fetchval(f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}", *params)
        doc = json.loads(raw)[0]
        times.append(doc["Execution Time"] + doc["Planning Time"])
        scans = seq_scans(doc["Plan"])
    return statistics.median(times), scans


async def cursor_at(conn, schema, order: Order, where: SqlWhere, nth: int) -> Cursor | None:
    """The cursor after the nth machine of the order (None if there are fewer)."""
    params = where.copy()
    page = order.page_sql(schema, params, None, nth)
    row = await conn.fetchrow(
        f"SELECT machine_id, sort_key FROM ({page}) p ORDER BY pos DESC LIMIT 1", *params.params
    )
    return None if row is None else Cursor(row["sort_key"], row["machine_id"])


async def main(dsn: str, runs: int) -> None:
    conn = await asyncpg.connect(dsn, server_settings=dict(POSTGRESQL_SESSION))
    schema = await reflect(conn)
    layout = bmdb.list_layout(schema, summary_fields)
    machines = await conn.fetchval("SELECT count(*) FROM machines")
    print(f"{machines} machines; ms = planning + execution, median of {runs}")
    print(f"{'order':<12}{'filter':<17}{'page':<22}{'ms':>8}  seq scans")
    for key in SORT_KEYS:
        for descending in (False, True):
            order = Order(key, descending)
            for fname, filters in FILTERS.items():
                where = build_where(filters, schema)
                keyed = await conn.fetchval(
                    f"SELECT count(*) FROM ({order.page_sql(schema, SqlWhere(), None, 10**9)}) p"
                    " WHERE p.sort_key IS NOT NULL"
                ) if key != "id" else machines  # fmt: skip
                pages = {"first": None}
                if fname == "no filter":
                    pages["deep (keyed, 90%)"] = await cursor_at(
                        conn, schema, order, where, max(1, keyed * 9 // 10)
                    )
                    if key in ("backoff", "heartbeat"):
                        pages["without key (+1000)"] = await cursor_at(
                            conn, schema, order, where, keyed + 1000
                        )
                for pname, after in pages.items():
                    sql, params = bmdb.list_statement(
                        layout, where, after=after, limit=101, with_total=False,
                        known_ptag=None, order=order, schema=schema,
                    )  # fmt: skip
                    ms, scans = await explain(conn, sql, params, runs)
                    print(
                        f"{order.sort:<12}{fname:<17}{pname:<22}{ms:>8.1f}"
                        f"  {', '.join(sorted(scans)) or '-'}"
                    )
    print("\ntext search, statements a first view runs:")
    for text in ("refused", "10.1.", "no such text at all", "%_"):
        where = build_where(MachineFilters(text=text), schema)
        sql, params = bmdb.list_statement(
            layout, where, after=None, limit=101, with_total=True, known_ptag=None
        )
        page_ms, _ = await explain(conn, sql, params, runs)
        facets_ms, _ = await explain(conn, bmdb.facets_statement(schema, where), where.params, 1)
        matched = await conn.fetchval(
            f"SELECT count(*) FROM machines m WHERE {where.sql}", *where.params
        )
        print(
            f"  text={text!r:<24} matches {matched:>6}: page+total {page_ms:7.1f} ms,"
            f" facets {facets_ms:7.1f} ms"
        )
    await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.dsn, args.runs))
