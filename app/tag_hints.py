"""How tags are summarized: the list's short form, the detail page's order."""

from __future__ import annotations

from datetime import datetime

from app.formatting import relative
from app.reflection import TagType


def tag_hint(tag: TagType, values: dict[str, object]) -> str:
    """e.g. `gen 3 Success` for an installation report, `2m ago` for a heartbeat."""
    parts = []
    if isinstance(values.get("generation"), int):
        parts.append(f"gen {values['generation']}")
    enum = next((f for f in tag.fields if f.is_enum and not f.is_array), None)
    if enum is not None and values.get(enum.name) is not None:
        parts.append(str(values[enum.name]))
    if not parts:
        stamp = next((v for v in values.values() if isinstance(v, datetime)), None)
        if stamp is not None:
            parts.append(relative(stamp))
    return " ".join(parts)


def detail_order(tag_types: tuple[TagType, ...]) -> list[TagType]:
    """Provided first (what an operator checks first), tags holding blobs last."""

    def rank(tag: TagType) -> tuple[int, str]:
        if tag.table == "machine_provided":
            return 0, tag.name
        return (2 if any(f.element_udt == "bytea" for f in tag.fields) else 1), tag.name

    return sorted(tag_types, key=rank)
