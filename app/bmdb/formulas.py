"""Boolean formulas over probes of a machine's rows, written out as SQL.

A `Probe` asks whether rows about a machine exist (a tag, work of some process, an active
backoff, ...); a formula combines probes with AND, OR and NOT (`Found`, `AllOf`,
`AnyOf`). app/bmdb/workflows.py builds a workflow's conditions and states from them.
A formula is written out for what reads it:

- `correlated(..., joins=False)`: EXISTS subqueries on one machine (its page's document);
- `correlated(..., joins=True)`: a filter on every machine, written so that PostgreSQL
  plans it as joins (the list's workflow filters);
- `Joined`: a column per probe, each origin's rows joined once (counts over the fleet,
  and a page of machines).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.bmdb.sql import SqlWhere


@dataclass(frozen=True)
class Probe:
    """Whether rows about a machine exist: FROM `source` WHERE `key` is the machine AND
    `pred`. {0}, {1}, ... in `source` stand for `source_values`, in `pred` for `values`,
    each bound as a parameter where the probe is written out (tuples are arrays)."""

    source: str
    key: str
    pred: str = "TRUE"
    values: tuple = ()
    source_values: tuple = ()
    unique: bool = True  # at most one row of `source` per machine

    @property
    def origin(self) -> tuple:
        """Probes of the same origin read the same rows: counts read them once."""
        return (self.source, self.source_values, self.key, self.unique)

    def bound_source(self, params: SqlWhere) -> str:
        return self.source.format(*(params.param(v) for v in self.source_values))

    def bound_pred(self, params: SqlWhere) -> str:
        return self.pred.format(*(params.param(v) for v in self.values))

    def exists(self, params: SqlWhere, m: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM {self.bound_source(params)}"
            f" WHERE {self.key} = {m}.machine_id AND {self.bound_pred(params)})"
        )


@dataclass(frozen=True)
class Found:
    """The probe finds a row (or, not `positive`, finds none)."""

    probe: Probe
    positive: bool = True  # False: the probe finds nothing


@dataclass(frozen=True)
class AllOf:
    parts: tuple = ()


@dataclass(frozen=True)
class AnyOf:
    parts: tuple = ()


Formula = Found | AllOf | AnyOf
TRUE, FALSE = AllOf(), AnyOf()


def negate(f: Formula) -> Formula:
    if isinstance(f, Found):
        return Found(f.probe, not f.positive)
    return (AnyOf if isinstance(f, AllOf) else AllOf)(tuple(negate(p) for p in f.parts))


def _combined(kind: type, parts: tuple[Formula, ...]) -> Formula:
    """`kind` (AllOf or AnyOf) of `parts`, flattened, each part once; the other kind's
    empty formula (FALSE in a conjunction, TRUE in a disjunction) is the whole of it."""
    absorbing = FALSE if kind is AllOf else TRUE
    flat: list[Formula] = []
    for p in parts:
        if p == absorbing:
            return absorbing
        flat += p.parts if isinstance(p, kind) else [p]
    flat = list(dict.fromkeys(flat))
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def all_of(*parts: Formula) -> Formula:
    return _combined(AllOf, parts)


def any_of(*parts: Formula) -> Formula:
    return _combined(AnyOf, parts)


def correlated(f: Formula, params: SqlWhere, m: str, *, joins: bool, depth: int = 0) -> str:
    """`f` for machine `m` as EXISTS subqueries. With `joins`, a disjunction is written
    NOT EXISTS (the machine, where every alternative fails): PostgreSQL plans that as
    an anti-join over joins, where an OR of EXISTS is a subplan per machine (or a hash of
    each whole table), so every state filter runs as joins."""
    if isinstance(f, Found):
        found = f.probe.exists(params, m)
        return found if f.positive else f"NOT {found}"
    if isinstance(f, AllOf):
        if not f.parts:
            return "TRUE"
        parts = [correlated(p, params, m, joins=joins, depth=depth) for p in f.parts]
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"
    if not f.parts:
        return "FALSE"
    if len(f.parts) == 1:
        return correlated(f.parts[0], params, m, joins=joins, depth=depth)
    if not joins:
        return "(" + " OR ".join(correlated(p, params, m, joins=False) for p in f.parts) + ")"
    x = f"x{depth}"
    none = correlated(negate(f), params, x, joins=True, depth=depth + 1)
    return (
        f"NOT EXISTS (SELECT 1 FROM machines {x} WHERE {x}.machine_id = {m}.machine_id AND {none})"
    )


class Joined:
    """Probes read as columns rather than subqueries: the rows of each origin (a tag
    table, work, backoffs, requests with their reports) LEFT JOINed once to the machines
    `m`, with a column per probe of that origin. One hash or index join per origin, where
    a correlated EXISTS per machine and condition would probe dozens of times per machine
    (or hash each whole table for each condition)."""

    def __init__(self, formulas: list[Formula], params: SqlWhere, *, only: str | None = None):
        """`only`: the machines the joins are for, as the right side of `machine_id =`
        (`ANY(...)`): each origin reads just their rows, by its index."""
        origins: dict[tuple, list[Probe]] = {}

        def collect(f: Formula) -> None:
            if isinstance(f, Found):
                probes = origins.setdefault(f.probe.origin, [])
                if f.probe not in probes:
                    probes.append(f.probe)
            else:
                for part in f.parts:
                    collect(part)

        for f in formulas:
            collect(f)
        self.columns: dict[Probe, str] = {}
        joins = []
        for i, probes in enumerate(origins.values()):
            alias, first = f"c{i}", probes[0]
            source = first.bound_source(params)
            preds = [p.bound_pred(params) for p in probes]
            selected, where = [f"{first.key} AS machine_id"], []
            for j, (probe, pred) in enumerate(zip(probes, preds, strict=True)):
                if pred == "TRUE":
                    self.columns[probe] = f"({alias}.machine_id IS NOT NULL)"
                else:
                    self.columns[probe] = f"coalesce({alias}.p{j}, false)"
                    selected.append(f"{pred if first.unique else f'bool_or({pred})'} AS p{j}")
            if "TRUE" not in preds:
                where.append("(" + " OR ".join(f"({p})" for p in preds) + ")")
            if only is not None:
                where.append(f"{first.key} = {only}")
            filtered = f" WHERE {' AND '.join(where)}" if where else ""
            grouped = "" if first.unique else f" GROUP BY {first.key}"
            joins.append(
                f" LEFT JOIN (SELECT {', '.join(selected)} FROM {source}{filtered}{grouped})"
                f" {alias} ON {alias}.machine_id = m.machine_id"
            )
        self.joins = "".join(joins)

    def sql(self, f: Formula) -> str:
        if isinstance(f, Found):
            return self.columns[f.probe] if f.positive else f"NOT {self.columns[f.probe]}"
        if not f.parts:
            return "TRUE" if isinstance(f, AllOf) else "FALSE"
        glue = " AND " if isinstance(f, AllOf) else " OR "
        return "(" + glue.join(self.sql(p) for p in f.parts) + ")"
