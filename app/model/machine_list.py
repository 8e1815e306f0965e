"""The machine list's query as pages share it: the list itself, its CSV and the watch
list of a filter ("Watch these")."""

from __future__ import annotations

from fastapi import HTTPException

from app.bmdb.connection import Reader
from app.bmdb.counts import CountCache
from app.bmdb.filters import FilterError, MachineFilters, SqlWhere, build_where
from app.bmdb.history_reads import HistoryReads
from app.bmdb.ordering import Order
from app.bmdb.reflection import Schema
from app.bmdb.workflows import Fleet
from app.model.failure_groups import ResolvedFailure, list_failure


async def list_query(
    counts: CountCache, reads: HistoryReads, reader: Reader, schema: Schema, fleet: Fleet,
    filters: MachineFilters,
) -> tuple[ResolvedFailure | None, SqlWhere, Order]:  # fmt: skip
    """The list's filters as SQL conditions, and its order: a 400 for one this BMDB cannot
    answer. A `failure=` group is resolved to its machine IDs (shared: failure_groups.py)."""
    failure = await list_failure(counts, reads, reader, filters)
    try:
        where = build_where(
            filters, schema, failure.machine_ids if failure else None, fleet=fleet
        )
        return failure, where, Order.parse(filters.sort, schema)
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from None
