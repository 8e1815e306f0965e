"""Each tag type as a table (/tags/{TagName}) and the tag types with their machine counts
(/tags): the statements, and the query string of a tag table read against reflection.

Everything comes from reflection: the table, its fields and their types. A field or a
filter that reflection does not know is a `FilterError` (a 400 that lists what is valid);
identifiers are quoted, values always bound, and a value is checked in Python against
its field's type before it is bound, so a bad one is a 400, never a failed cast.

Filters (query parameters; repeated `field=value` are alternatives, the rest combine):
- `field=value`: equal. Text, enums (a label of the enum), numbers, booleans, UUIDs,
  times, addresses and JSON compare as values; arrays and other types as their text.
- `field__isnull=1` (or `0`: has a value);
- `field__gt=` / `field__lt=`: numbers and times only.

Sorting (`sort=field`, `-field` descending, `machine_id` by default) by any field, NULLs
last in both directions (app/bmdb/keyset.py): numbers, times, booleans, UUIDs, addresses,
enums (in the enum's order), JSONB and intervals by value; blobs by their size; text,
arrays and other types by their text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

from app.bmdb.columns import tag_expr
from app.bmdb.filters import FilterError
from app.bmdb.keyset import (
    MACHINE_ID,
    Column,
    Keyset,
)
from app.bmdb.reflection import Field, Schema, TagType, quote_ident
from app.bmdb.sql import SqlWhere, json_array
from app.bmdb.value_checks import (
    FALSE,
    TRUE,
    check_bool,
    check_cidr,
    check_inet,
    check_integer,
    check_json,
    check_number,
    check_text,
    check_time,
    check_timestamp,
    check_uuid,
)

# Query parameters of a tag table that are not field filters.
RESERVED = frozenset({"sort", "after", "limit", "live", "every", "format"})
OPERATORS = ("isnull", "gt", "lt")  # field__<op>=
MAX_FILTERS = 30
ID_SORT = "machine_id"
NULL = "NULL"  # how a facet names the rows without a value (linked as field__isnull=1)
# Of each blob in a tag table's page: small ones whole (a hardware report of a few KiB is
# decoded to its one-line summary), the start of bigger ones (a preview, and a download).
TABLE_BLOB_BYTES = 4096

_TEXT = frozenset({"text", "varchar", "bpchar", "name", "char"})


@dataclass(frozen=True)
class _Kind:
    """How values of a type compare: checked (`check` returns the text to bind, or raises
    ValueError), bound and cast to `cast`; `ordered`: __gt/__lt apply. No check: compared
    as the column's text."""

    check: Callable[[str], object] | None
    cast: str = "text"
    ordered: bool = False


_KINDS = {
    **dict.fromkeys(_TEXT, _Kind(check_text)),
    **dict.fromkeys(("int2", "int4", "int8", "oid"), _Kind(check_integer, "numeric", True)),
    "numeric": _Kind(check_number, "numeric", True),
    **dict.fromkeys(("float4", "float8"), _Kind(check_number, "float8", True)),
    **{udt: _Kind(check_timestamp, udt, True) for udt in ("timestamp", "timestamptz", "date")},
    **{udt: _Kind(check_time, udt, True) for udt in ("time", "timetz")},
    "bool": _Kind(check_bool, "bool"),
    "uuid": _Kind(check_uuid, "uuid"),
    "inet": _Kind(check_inet, "inet"),
    "cidr": _Kind(check_cidr, "cidr"),
    **dict.fromkeys(("json", "jsonb"), _Kind(check_json, "jsonb")),
}


def _kind(field: Field) -> _Kind | None:
    """How `field=value` compares; None for a blob (no equality on bytes here)."""
    if field.is_array or (field.read_as_text and not field.is_enum):
        return _Kind(check_text)  # as its text
    if field.is_enum:
        return _Kind(lambda v: _label(field, v))
    if field.element_udt == "bytea":
        return None
    return _KINDS.get(field.element_udt, _Kind(None))  # interval, macaddr...: as text


def _label(field: Field, value: str) -> str:
    if value not in field.enum_values:
        raise ValueError(f"one of {', '.join(field.enum_values)}")
    return value


def sort_key(field: Field, alias: str = "{t}") -> Column:
    """The expression a tag table sorts `field` by, its type and the check of its text."""
    column = f"{alias}.{quote_ident(field.name)}"
    udt = field.element_udt
    if field.is_enum and not field.is_array:
        return Column(column, quote_ident(udt), lambda v: _label(field, v))
    if udt == "bytea" and not field.is_array:
        return Column(f"octet_length({column})", "bigint", check_integer)
    if udt == "interval" and not field.is_array:
        return Column(f"extract(epoch FROM {column})", "numeric", check_number)
    kind = _kind(field)
    if field.is_array or udt == "json" or kind is None or kind.check in (None, check_text):
        return Column(f"{column}::text", "text")
    return Column(column, udt, kind.check)


@dataclass(frozen=True)
class FieldFilter:
    field: Field
    op: str  # eq, isnull, gt, lt
    value: str  # as the query string gave it

    @property
    def param(self) -> str:
        return self.field.name if self.op == "eq" else f"{self.field.name}__{self.op}"

    def condition(self, where: SqlWhere) -> str:
        column = f"t.{quote_ident(self.field.name)}"
        if self.op == "isnull":
            return f"{column} IS {'' if check_bool(self.value) else 'NOT '}NULL"
        kind = _kind(self.field)
        assert kind is not None and kind.check is not None or self.op == "eq"
        if kind is None or kind.check in (None, check_text) or self.field.is_enum:
            return f"{column}::text = {where.param(self.value)}"
        if self.field.element_udt == "json":
            column += "::jsonb"
        op = {"eq": "=", "gt": ">", "lt": "<"}[self.op]
        value = kind.check(self.value)
        if isinstance(value, bool):
            return f"{column} {op} {where.param(value)}::bool"
        return f"{column} {op} {where.param(value)}::text::{kind.cast}"


def _parse_filter(tag: TagType, name: str, value: str) -> FieldFilter:
    field_name, _, op = name.partition("__")
    field = tag.field(field_name)
    if field is None or (op and op not in OPERATORS):
        raise FilterError(
            f"{name[:80]!r} is not a field of {tag.name}: its fields are"
            f" {', '.join(f.name for f in tag.fields) or '(none)'}; filter with field=value,"
            f" field__isnull=1, field__gt= or field__lt=, and {', '.join(sorted(RESERVED))}"
        )
    if "\x00" in value or len(value) > 1000:
        raise FilterError(f"{name}= must be at most 1000 characters, without NUL")
    kind = _kind(field)
    if op == "isnull":
        if value.lower() not in (*TRUE, *FALSE):
            raise FilterError(f"{name} must be 1 (no value) or 0 (has a value)")
    elif kind is None:
        raise FilterError(f"{field.name} is a blob ({field.human_type}): filter it with __isnull")
    elif op and not kind.ordered:
        raise FilterError(
            f"{name}: __gt and __lt compare numbers and times; {field.name} is"
            f" {field.human_type}"
        )
    elif kind.check is not None:
        try:
            kind.check(value)
        except ValueError as exc:
            raise FilterError(f"{name}={value[:80]!r} is not a value of {field.name}"
                              f" ({field.human_type}): {exc}") from None  # fmt: skip
    return FieldFilter(field, op or "eq", value)


@dataclass(frozen=True)
class TagQuery:
    """A tag table's filters and order, read against the tag's reflected fields."""

    tag: TagType
    filters: tuple[FieldFilter, ...] = ()
    sort: str = ID_SORT

    @classmethod
    def parse(cls, tag: TagType, pairs: list[tuple[str, str]], sort: str) -> TagQuery:
        """The query string's pairs (reserved parameters are skipped); FilterError for a
        field reflection does not know, or a value its type cannot hold."""
        filters = tuple(
            _parse_filter(tag, name, value) for name, value in pairs if name not in RESERVED
        )
        if len(filters) > MAX_FILTERS:
            raise FilterError(f"at most {MAX_FILTERS} filters at once")
        name = sort.removeprefix("-")
        if name != ID_SORT and tag.field(name) is None:
            raise FilterError(
                f"sort={sort[:80]!r}: sort by {ID_SORT} or a field of {tag.name}"
                f" ({', '.join(f.name for f in tag.fields) or 'none'}), '-' for descending"
            )
        return cls(tag, tuple(dict.fromkeys(filters)), sort)

    def query(self) -> list[tuple[str, str]]:
        """The filters as query parameters, then the order unless it is the default."""
        pairs = [(f.param, f.value) for f in self.filters]
        return pairs + ([("sort", self.sort)] if self.sort != ID_SORT else [])

    def with_(self, param: str, value: str) -> TagQuery:
        """These filters and `param=value` (a facet's link), from the first page."""
        return replace(self, filters=(*self.filters, _parse_filter(self.tag, param, value)))

    def without(self, param: str, value: str) -> TagQuery:
        return replace(self, filters=tuple(
            f for f in self.filters if (f.param, f.value) != (param, value)
        ))  # fmt: skip

    def cleared(self) -> TagQuery:
        return replace(self, filters=())

    def sorted_by(self, sort: str) -> TagQuery:
        return replace(self, sort=sort)

    def where(self, params: SqlWhere, *, without: Field | None = None) -> SqlWhere:
        """Conditions on the tag table `t` (but those on `without`, for its facet): the
        filters of one field and operator are alternatives, the rest combine."""
        where = SqlWhere(params=params.params)
        groups: dict[tuple[str, str], list[FieldFilter]] = {}
        for f in self.filters:
            if f.field != without:
                groups.setdefault((f.field.name, f.op), []).append(f)
        for group in groups.values():
            conditions = [f.condition(where) for f in group]
            where.add(conditions[0] if len(conditions) == 1 else f"({' OR '.join(conditions)})")
        return where

    def keyset(self) -> Keyset:
        name = self.sort.removeprefix("-")
        field = self.tag.field(name)
        return Keyset.build(
            self.sort, quote_ident(self.tag.table), "t", (MACHINE_ID,),
            key=sort_key(field) if field is not None else None,
            nullable=field is not None and field.nullable,
            descending=self.sort.startswith("-"),
        )  # fmt: skip

    with_clause: ClassVar[str] = ""

    def counts(self, params: SqlWhere) -> str:
        return _counts(self, params)

    def row(self, *, csv: bool = False) -> str:
        """A page row: [machine_id, [its fields' values, in order]] (blobs: their first
        TABLE_BLOB_BYTES; a CSV's, their length only)."""
        fields = tag_expr(self.tag.fields, "p", blob_cap=0 if csv else TABLE_BLOB_BYTES)
        return f"json_build_array(p.machine_id, {fields})"

    @property
    def facet_fields(self) -> tuple[Field, ...]:
        """The fields whose values the page counts: enums and booleans."""
        return tuple(f for f in self.tag.fields if not f.is_array
                     and (f.is_enum or f.element_udt == "bool"))  # fmt: skip


def _counts(query: TagQuery, params: SqlWhere) -> str:
    """The total, the NULLs of each field, and the values of each enum and boolean field
    (under the filters of the other fields)."""
    table = quote_ident(query.tag.table)
    where = query.where(params).sql
    nulls = json_array([f"count(*) FILTER (WHERE t.{quote_ident(f.name)} IS NULL)"
                        for f in query.tag.fields] or ["0"])  # fmt: skip
    values = [
        "(SELECT coalesce(json_agg(json_build_array(g.v, g.n) ORDER BY g.n DESC, g.v),"
        f" '[]'::json) FROM (SELECT t.{quote_ident(f.name)}::text AS v, count(*) AS n"
        f" FROM {table} t WHERE {query.where(params, without=f).sql} GROUP BY 1) g)"
        for f in query.facet_fields
    ]
    return (
        f"json_build_object('total', (SELECT count(*) FROM {table} t WHERE {where}),"
        f" 'nulls', (SELECT {nulls} FROM {table} t WHERE {where}),"
        f" 'values', {json_array(values or ['NULL'])})"
    )


def counts_statement(schema: Schema) -> str:
    """Machines per tag type, in the schema's order (/tags)."""
    counts = [f"(SELECT count(*) FROM {quote_ident(t.table)})" for t in schema.tag_types]
    return f"SELECT {json_array(counts or ['NULL'])} AS doc"
