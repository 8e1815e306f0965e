"""A big page's document decoded, and its JSON twin serialized, in slices that let the event
loop run between them (app/slices.py; bench/json_stall.py measures the stall), and the
result exactly what decoding or serializing all at once gives."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel, Field, computed_field

from app import slices
from app.bmdb import machines as bmdb_machines
from app.render import templating
from tests import test_protobuf_names as pb
from tests.support import run_sync, webug_client

descriptor_set, reported_dsn = pb.descriptor_set, pb.reported_dsn  # fixtures used below


@pytest.fixture
def every_item_a_slice(monkeypatch):
    monkeypatch.setattr(slices, "BUDGET_S", 0.0)


def _loop_turns_during(work) -> int:
    """How many times a concurrent task ran while `work()` (a coroutine) was awaited."""

    async def scenario() -> int:
        turns = 0

        async def other() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        await asyncio.sleep(0)
        before = turns
        await work()
        task.cancel()
        return turns - before

    return run_sync(scenario())


def test_each_slice_lets_other_tasks_run(every_item_a_slice):
    items = list(range(100))
    assert _loop_turns_during(lambda: slices.map_in_slices(str, items)) >= 99
    text = json.dumps({"machines": items, "total": 100})
    assert _loop_turns_during(lambda: slices.loads_in_slices(text, "machines")) >= 99

    class Page(BaseModel):
        machines: list[int]

    page = Page(machines=items)
    dump = slices.model_json_in_slices
    assert _loop_turns_during(lambda: dump(page, "machines", {"machines": []})) >= 99


class Item(BaseModel):
    name: str
    machines: list[int] = []  # a nested key of the list's name


class Page(BaseModel):
    before: str
    machines: list[Item]
    after: float


class Computed(BaseModel):
    """As the list's page: its machines computed from rows."""

    rows: list[str] = Field(exclude=True)
    total: int

    @computed_field
    @property
    def machines(self) -> list[Item]:
        return [Item(name=r) for r in self.rows]

    @computed_field
    @property
    def last(self) -> str:
        return "end"


@pytest.mark.parametrize(
    ("page", "emptied"),
    [
        (Page(before='"machines":[]', machines=[Item(name=f"m{i}") for i in range(50)],
              after=1), {"machines": []}),  # fmt: skip
        (Page(before="x", machines=[], after=float("inf")), {"machines": []}),
        (Page(before="x", machines=[Item(name="a", machines=[1])], after=0), {"machines": []}),
        (Computed(rows=[f"r{i}" for i in range(20)], total=20), {"rows": []}),
    ],
)
def test_a_twin_in_slices_is_byte_for_byte_the_models_dump(page, emptied, every_item_a_slice):
    sliced = run_sync(slices.model_json_in_slices(page, "machines", emptied))
    assert sliced == page.model_dump_json().encode()


@pytest.mark.parametrize(
    "text",
    [
        '{"machines" : [["a", {"x" : [1, 2]}], \n ["b", null]], "total" : 2}',
        '{"machines":[],"total":0}',
        '{ "machines" : [ 1 ] }',
        '{"total": 1, "machines": [1, 2]}',  # not the first key: decoded at once
        "[1, 2]",
        "null",
    ],
)
def test_a_document_in_slices_is_what_json_decodes(text, every_item_a_slice):
    assert run_sync(slices.loads_in_slices(text, "machines")) == json.loads(text)


def test_broken_json_fails_as_json_fails(every_item_a_slice):
    with pytest.raises(json.JSONDecodeError):
        run_sync(slices.loads_in_slices('{"machines": [1 2]}', "machines"))
    with pytest.raises(json.JSONDecodeError):
        run_sync(slices.loads_in_slices('{"machines": [1, 2', "machines"))
    with pytest.raises(json.JSONDecodeError):
        run_sync(slices.loads_in_slices('{"machines": [1, ]}', "machines"))


def test_the_lists_json_twin_of_a_big_page_is_complete_and_what_the_model_dumps(
    seeded_db_dsn, monkeypatch, every_item_a_slice
):
    """The list at its largest page size: the BMDB's document decoded in slices is what
    json.loads gives, and the twin serialized in slices is the page model's own dump."""
    checked = {}

    async def loads_checked(text, key):
        decoded = await slices.loads_in_slices(text, key)
        assert decoded == json.loads(text)
        checked["document"] = len(text)
        return decoded

    async def dump_checked(model, field, emptied, item_json):
        body = await slices.model_json_in_slices(model, field, emptied, item_json)
        assert body == model.model_dump_json().encode()  # kept items too (the second time)
        checked["twin"] = len(body)
        checked["dumps"] = checked.get("dumps", 0) + 1
        return body

    monkeypatch.setattr(bmdb_machines, "loads_in_slices", loads_checked)
    monkeypatch.setattr(templating, "model_json_in_slices", dump_checked)
    with webug_client(seeded_db_dsn) as client:
        first = client.get("/?format=json&limit=5000")
        response = client.get("/?format=json&limit=5000")  # its items kept from the first
        html = client.get("/?limit=5000").text
    assert checked["dumps"] == 2 and response.json()["machines"] == first.json()["machines"]
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content) == checked["twin"]
    page = response.json()
    assert checked["document"] > 0
    ids = [m["machine_id"] for m in page["machines"]]
    assert len(ids) == page["total"] == 300 and ids == sorted(ids)
    assert all(f'id="m-{i}"' in html for i in ids)  # the same machines as the HTML page
    assert page["next_after"] is None and page["queries"]


def test_a_twin_in_slices_names_protobuf_fields_with_the_apps_descriptor_set(
    reported_dsn, descriptor_set
):
    """Serialized as the response is sent, after `respond` returned: still with the app's
    descriptor set (whole blobs in the list's twin decode as on the machine's page)."""
    with webug_client(
        reported_dsn, proto_descriptors=descriptor_set, proto_columns={pb.COLUMN: pb.TYPE}
    ) as client:
        [machine] = client.get("/?format=json").json()["machines"]
    assert machine["machine_id"] == pb.MACHINE
    value = machine["tags"]["HardwareReport"][pb.COLUMN]
    assert value["complete"] and value["protobuf_type"] == pb.TYPE
    assert value["message"]["hostname"] == "node-17.fr5"
