"""SQL composition that every page's statement uses: JSON documents, polled ones, and
WHERE conditions with their bound parameters (`SqlWhere`)."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_FUNCTION_ARGS = 100  # PostgreSQL's FUNC_MAX_ARGS: json_build_array(...) takes at most this


def json_array(exprs: list[str]) -> str:
    """json_build_array of any number of expressions (nested in chunks past the argument
    limit; `unchunk` flattens it back)."""
    if len(exprs) <= MAX_FUNCTION_ARGS:
        return f"json_build_array({', '.join(exprs)})"
    chunks = [exprs[i : i + MAX_FUNCTION_ARGS] for i in range(0, len(exprs), MAX_FUNCTION_ARGS)]
    return json_array([json_array(chunk) for chunk in chunks])


def unchunk(values: list, count: int) -> list:
    """The flat list `json_array` of `count` expressions was built from."""
    if count <= MAX_FUNCTION_ARGS:
        return values
    size = -(-count // MAX_FUNCTION_ARGS)  # chunks at the first level
    return [v for chunk in unchunk(values, size) for v in chunk]


def polled(document_sql: str, ptag_param: str, *passed: str) -> str:
    """`document_sql` (one row, column `doc`) with the md5 of its document; the document
    itself only when the md5 differs from `ptag_param`, the one the client holds: a poll
    whose data is unchanged costs one small statement and no transfer. `passed`: other
    columns of `document_sql`, returned either way.

    Each OFFSET 0 keeps a subquery of its own, computed once: pulled up into the SELECT
    above it, the document's expression would be computed for each use of `doc`, and the
    md5 (of the whole document's text) for each use of `ptag`."""
    return (
        "SELECT hashed.ptag,"
        f" CASE WHEN hashed.ptag IS DISTINCT FROM {ptag_param} THEN hashed.doc END AS doc"
        f"{''.join(f', hashed.{c}' for c in passed)}"
        f" FROM (SELECT md5(page.doc::text) AS ptag, page.doc"
        f"{''.join(f', page.{c}' for c in passed)}"
        f" FROM ({document_sql} OFFSET 0) page OFFSET 0) hashed"
    )


@dataclass
class SqlWhere:
    """WHERE conditions on `machines m` with their positional parameters."""

    conditions: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)
    # Which of `conditions` pick a state tab (app/bmdb/machine_states.py): the tabs are
    # counted under the others (`sql_without_tabs`).
    tab_conditions: frozenset[int] = frozenset()

    def param(self, value: object) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def add(self, condition: str, *, tab: bool = False) -> None:
        if tab:
            self.tab_conditions |= {len(self.conditions)}
        self.conditions.append(condition)

    def copy(self) -> SqlWhere:
        """The same conditions and parameters, to bind more to without changing these."""
        return SqlWhere(list(self.conditions), list(self.params), self.tab_conditions)

    @property
    def sql(self) -> str:
        return " AND ".join(self.conditions) if self.conditions else "TRUE"

    @property
    def sql_without_tabs(self) -> str:
        others = [c for i, c in enumerate(self.conditions) if i not in self.tab_conditions]
        return " AND ".join(others) if others else "TRUE"
