"""CPU-heavy work on a page's long list done in slices, the event loop running between
them: a page of 5,000 machines must not keep /healthz and every other request waiting.

Decoding, validating and serializing 5,000 machines takes most of a second of CPU, all
of it holding the GIL. A worker thread freed the loop about as well (bench/json_stall.py:
/healthz waited up to ~50 ms rather than 0.4-0.7 s), but for the document's json.loads,
whose C decoder holds the GIL for all its ~35 ms, and each of the loop's turns then waits
for the GIL. In slices a turn waits for one slice (BUDGET_S) at most, and context
variables (the app's protobuf descriptor set) stay where they are.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, TypeAdapter

T = TypeVar("T")
R = TypeVar("R")

# Work between two turns of the event loop. A request waiting on the loop needs several
# turns (read it, run it, its BMDB round trip, write the answer), each up to this long.
BUDGET_S = 0.002


class Pacer:
    """`await pacer.turn()` after each piece of work: yields to the event loop once
    BUDGET_S has passed since the last time."""

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline = time.perf_counter() + BUDGET_S

    async def turn(self) -> None:
        if time.perf_counter() > self.deadline:
            await asyncio.sleep(0)
            self.deadline = time.perf_counter() + BUDGET_S


async def map_in_slices(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """[fn(item) for item in items], yielding to the event loop every BUDGET_S."""
    out: list[R] = []
    pacer = Pacer()
    for item in items:
        out.append(fn(item))
        await pacer.turn()
    return out


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


async def loads_in_slices(text: str, key: str) -> Any:
    """`json.loads(text)` of an object whose first key is `key` and holds a long array:
    the array's items are decoded one by one, in slices. (Any other text is decoded at
    once.)"""
    start = re.match(rf'\{{[ \t\n\r]*"{re.escape(key)}"[ \t\n\r]*:[ \t\n\r]*\[', text)
    if start is None:
        return json.loads(text)
    items: list[Any] = []
    pacer = Pacer()
    i = _SPACE.match(text, start.end()).end()
    while text[i : i + 1] != "]":
        item, i = _DECODER.raw_decode(text, i)
        items.append(item)
        i = _SPACE.match(text, i).end()
        if text[i : i + 1] == ",":
            i = _SPACE.match(text, i + 1).end()
            if text[i : i + 1] == "]":
                return json.loads(text)  # a trailing comma: raises json's own error
        elif text[i : i + 1] != "]":
            return json.loads(text)  # not JSON: raises json's own error
        await pacer.turn()
    document = json.loads(text[: start.end()] + text[i:])  # the rest, the array emptied
    document[key] = items
    return document


@lru_cache(maxsize=32)
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation)


async def model_json_in_slices(
    model: BaseModel,
    field: str,
    emptied: dict[str, Any],
    item_json: Callable[[Any, Callable[[Any], bytes]], bytes] | None = None,
) -> bytes:
    """`model.model_dump_json()`, byte for byte, with the items of its list `field` (a
    field or a computed field) serialized in slices. `emptied`: the update of `model` that
    makes `field` an empty list (the field itself, or what a computed field is computed
    from). Nothing else in the dump may depend on `field`'s items. `item_json(item, dump)`,
    when given, answers an item's JSON (`dump(item)`, or the same bytes kept from before)."""
    # The model with an empty list in its place gives everything around the list, in
    # field order. A key inside a JSON string has its quotes escaped, so the marker can
    # only be this field, or a nested object's key of the same name: then all at once.
    marker = f'"{field}":[]'.encode()
    frame = model.model_copy(update=emptied).model_dump_json().encode()
    if frame.count(marker) != 1:
        return model.model_dump_json().encode()
    model_type = type(model)
    declared = model_type.model_fields.get(field)
    annotation = (
        declared.annotation
        if declared is not None
        else model_type.model_computed_fields[field].return_type
    )
    (item_type,) = get_args(annotation)  # list[item_type]
    dump = _adapter(item_type).dump_json
    each = dump if item_json is None else (lambda item: item_json(item, dump))
    items = await map_in_slices(each, getattr(model, field))
    head, tail = frame.split(marker)
    return b"".join((head, f'"{field}":['.encode(), b",".join(items), b"]", tail))
