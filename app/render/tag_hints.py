"""How tags are summarized: the list's short form, the detail page's order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.bmdb import tables
from app.bmdb.reflection import Field, TagType

# The Provided chip in the list shows these (partials/machine_row.html).
PROVIDED_SUMMARY = (
    "provider", "provider_location", "provider_ip_address", "provider_id", "provider_status",
)  # fmt: skip
_TIMESTAMP_UDTS = frozenset({"timestamp", "timestamptz"})


def _hint_enum(tag: TagType) -> Field | None:
    """The enum field a tag's hint shows (e.g. an installation report's result)."""
    return next((f for f in tag.fields if f.is_enum and not f.is_array), None)


def tag_hint(tag: TagType, values: dict[str, object]) -> tuple[str, datetime | None]:
    """(text, time) summarizing a tag in the list: ("gen 3 Success", None) for an
    installation report, ("", its time) for a heartbeat, which the row shows relative."""
    parts = []
    if isinstance(values.get("generation"), int):
        parts.append(f"gen {values['generation']}")
    enum = _hint_enum(tag)
    if enum is not None and values.get(enum.name) is not None:
        parts.append(str(values[enum.name]))
    if parts:
        return " ".join(parts), None
    return "", next((v for v in values.values() if isinstance(v, datetime)), None)


@dataclass(frozen=True)
class ListColumns:
    """Which tags the list's row shows where (partials/machine_row.html): Provided as the
    provider chip, the heartbeat's age in a column of its own, the others in Tags."""

    provided: str | None  # tag names, as a machine's `tags` has them
    heartbeat: str | None
    others: tuple[TagType, ...]

    def others_of(self, tags: dict[str, dict]) -> list[tuple[str, str, datetime | None]]:
        """The other tags a machine has, each as (name, `tag_hint`'s text and time)."""
        return [
            (tag.name, *tag_hint(tag, values))
            for tag in self.others
            if (values := tags.get(tag.name)) is not None
        ]


def list_columns(tag_types: tuple[TagType, ...]) -> ListColumns:
    def name(table: str) -> str | None:
        return next((t.name for t in tag_types if t.table == table), None)

    heartbeat = name(tables.HEARTBEAT)
    if heartbeat is not None and not any(
        f.name == "agent_heartbeat_at" for t in tag_types if t.name == heartbeat for f in t.fields
    ):
        heartbeat = None  # a heartbeat tag of another shape: shown with the others
    shown = {name(tables.PROVIDED), heartbeat}
    return ListColumns(
        name(tables.PROVIDED), heartbeat, tuple(t for t in tag_types if t.name not in shown)
    )


def summary_fields(tag: TagType) -> tuple[Field, ...]:
    """The fields the list's short form of this tag reads; the list fetches only these
    (a page of 100 rows need not carry 100 hardware reports)."""
    if tag.table == tables.PROVIDED:
        return tuple(f for f in tag.fields if f.name in PROVIDED_SUMMARY)
    enum = _hint_enum(tag)
    return tuple(
        f
        for f in tag.fields
        if f.name == "generation" or f is enum or (f.udt_name in _TIMESTAMP_UDTS and not f.is_array)
    )


def detail_order(tag_types: tuple[TagType, ...]) -> list[TagType]:
    """Provided first (what an operator checks first), tags holding blobs last."""

    def rank(tag: TagType) -> tuple[int, str]:
        if tag.table == tables.PROVIDED:
            return 0, tag.name
        return (2 if any(f.element_udt == "bytea" for f in tag.fields) else 1), tag.name

    return sorted(tag_types, key=rank)
