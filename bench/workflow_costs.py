"""What workflow eligibility costs: the statements of the workflow views, timed on a BMDB.

    python bench/workflow_costs.py --dsn postgresql://.../bmdb [--runs 5]

Seed one first (`python -m app seed --dsn ... --machines 100000`). For each view it
prints the median (and fastest) execution time (from `EXPLAIN (ANALYZE, TIMING OFF)`: the BMDB's
own time, no network or decoding) of the statements the list page sends: the facets
statement (counted once per view per WEBUG_COUNT_CACHE_SECONDS), the keyset page (every
poll) and the filtered total; and of the overview and a machine page. The facets without
workflows are the baseline the workflow counts add to.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.bmdb import machines as bmdb  # noqa: E402
from app.bmdb.connection import Database  # noqa: E402
from app.bmdb.filters import MachineFilters, SqlWhere, build_where  # noqa: E402
from app.bmdb.reflection import reflect  # noqa: E402
from app.bmdb.workflows import compiled, counts_sql  # noqa: E402
from app.config import Settings  # noqa: E402
from app.render.tag_hints import summary_fields  # noqa: E402

VIEWS = (
    "",
    "workflow=AgentRecovery&workflow_state=eligible",
    "workflow=AgentStart&workflow_state=blocked",
    "workflow=AgentRecovery&workflow_state=waiting",
    "stuck=1",
    "blocker=stale_work",
    "working=1",
    "eligible=1",
    "unmanaged=1",
)


def filters_of(query: str) -> MachineFilters:
    return MachineFilters(**dict(p.split("=", 1) for p in query.split("&") if p))


async def execution_ms(conn, sql: str, params: list, runs: int) -> str:
    """Median (and fastest) execution time: on a shared machine the fastest run is the
    statement's own cost, the median what a page waits."""
    times = []
    for _ in range(runs):
        plan = "\n".join(
            r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, TIMING OFF) {sql}", *params)
        )
        times.append(float(re.search(r"Execution Time: ([\d.]+) ms", plan)[1]))
    return f"{statistics.median(times):.0f} ({min(times):.0f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    db = Database(args.dsn, Settings(dsn=args.dsn, statement_timeout_ms=120_000))
    await db.open()
    try:
        async with db.connection() as conn:
            await conn.execute("SET statement_timeout = 120000")
            schema = await reflect(conn)
            fleet = compiled(schema)
            machines = await conn.fetchval("SELECT count(*) FROM machines")
            print(
                f"{machines} machines, schema {schema.version}:"
                f" ms, median (fastest) of {args.runs} runs"
            )
            layout = bmdb.list_layout(schema, summary_fields)
            for query in VIEWS:
                f = filters_of(query)
                where = build_where(f, schema, fleet=fleet)
                rows = fleet if f.workflow_view else None
                page = bmdb.list_statement(
                    layout, where, after=None, limit=101, with_total=False, known_ptag=None,
                    fleet=rows,
                )  # fmt: skip
                figures = {
                    "facets": bmdb.facets_statement(schema, where, fleet),
                    "facets without workflows": bmdb.facets_statement(schema, where),
                    "page": page,
                    "total": (f"SELECT count(*) FROM machines m WHERE {where.sql}", where.params),
                }
                if not query:
                    counts = SqlWhere()
                    figures["workflow counts alone"] = (
                        f"SELECT {counts_sql(fleet, counts)}", counts.params
                    )
                    del figures["total"]
                shown = []
                for name, (sql, params) in figures.items():
                    shown.append(f"{name} {await execution_ms(conn, sql, params, args.runs)}")
                print(f"/?{query:48s} " + " · ".join(shown))
    finally:
        await db.close()


if __name__ == "__main__":
    asyncio.run(main())
