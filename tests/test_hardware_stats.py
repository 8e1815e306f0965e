"""`bmdb_hwstats_region_*` on a real PostgreSQL: reports encoded with upstream's message
layout (app/demo/protobuf_wire.py builds them field by field) summed per provider and
location; reports that do not parse skipped and counted, machines without a location
skipped as upstream skipped them."""

from __future__ import annotations

import pytest

from app.bmdb import fleet_stats
from app.demo import protobuf_wire as pw
from app.fleet.hardware import HardwareStats, add_reports
from tests.fleet import machines_sql, mid
from tests.support import webug_client
from tests.test_fleet_stats import collected
from tests.test_json_slices import _loop_turns_during, every_item_a_slice  # noqa: F401

GIB = 1 << 30


def cpu(threads: int) -> bytes:
    """A CPU (Node field 10) with its other fields, which the sums do not read."""
    return pw.f_message(10, pw.message(
        pw.f_varint(8, threads // 2), pw.f_varint(9, threads), pw.f_string(10, "GenuineIntel"),
    ))  # fmt: skip


def report(memory: int, *cpus: bytes, warnings: tuple[str, ...] = ()) -> bytes:
    node = pw.message(
        pw.f_string(1, "Supermicro"), pw.f_string(2, "SYS-1029"), pw.f_string(3, "S123"),
        pw.f_varint(8, memory), pw.f_float(9, 0.97), *cpus,
        pw.f_message(11, pw.message(pw.f_string(1, "ATA"), pw.f_varint(6, 960 * 10**9))),
        pw.f_message(12, pw.message(pw.f_bytes(1, b"\x3c\xec\xef\x00\x00\x01"))),
        pw.f_varint(13, 4),
    )  # fmt: skip
    return pw.message(pw.f_message(1, node), *(pw.f_string(2, w) for w in warnings))


def _text(value: str | None) -> str:
    return "NULL" if value is None else f"'{value}'"


def _hex(data: bytes) -> str:
    return "'\\x" + data.hex() + "'::bytea"


# machine: (provider, location, report); None: no Provided tag.
REPORTS = {
    1: ("Equinix", "fr5", report(256 * GIB, cpu(48), cpu(48), warnings=("EFI not mounted",))),
    2: ("Equinix", "fr5", report(128 * GIB, cpu(32))),
    3: ("Lumen", "ny7", report(64 * GIB, cpu(16))),
    # A field of the wrong wire type is kept as an unknown field: the report parses.
    4: ("Lumen", "ny7", pw.f_message(1, pw.message(pw.f_string(8, "lots"), cpu(8)))),
    5: ("Lumen", "ny7", b""),  # an empty report: a node with nothing in it
    6: ("Equinix", None, report(512 * GIB, cpu(64))),  # no location: skipped
    7: ("Equinix", "fr5", report(1 * GIB, cpu(2))[:-5]),  # truncated: not protobuf
    8: ("None", "lab", b"\xff\xff\xff\xff"),  # not protobuf
    9: (None, None, report(999 * GIB, cpu(999))),  # no Provided tag: not read
}
FLEET = [
    machines_sql(1, len(REPORTS)),
    *(
        "INSERT INTO machine_provided (machine_id, provider, provider_id, provider_location)"
        f" VALUES ('{mid(n)}', '{provider}', 'p{n}', {_text(location)})"
        for n, (provider, location, _) in REPORTS.items() if provider is not None
    ),
    *(
        f"INSERT INTO machine_hardware_report VALUES ('{mid(n)}', {_hex(raw)})"
        for n, (_, _, raw) in REPORTS.items()
    ),
]  # fmt: skip


@pytest.mark.parametrize("page", [fleet_stats.HARDWARE_PAGE, 2, 3])  # pages: 1, 5 (the last
def test_regions_sum_the_reports_and_skip_what_upstream_skipped(  # empty) and 3 (the last
    migrated_db_dsn, monkeypatch, page  # not full): 8 reports of provided machines
):
    from tests.support import execute, run_sync

    monkeypatch.setattr(fleet_stats, "HARDWARE_PAGE", page)
    run_sync(execute(migrated_db_dsn, *FLEET))
    with webug_client(migrated_db_dsn, fleet_stats_seconds=3600) as client:
        found = collected(client)
    fr5 = (("location", "fr5"), ("provider", "Equinix"))
    ny7 = (("location", "ny7"), ("provider", "Lumen"))
    assert found["bmdb_hwstats_region_nodes"] == {fr5: 2, ny7: 3}
    assert found["bmdb_hwstats_region_ram_bytes"] == {fr5: (256 + 128) * GIB, ny7: 64 * GIB}
    assert found["bmdb_hwstats_region_cpu_threads"] == {fr5: 48 + 48 + 32, ny7: 16 + 8}
    assert found["webug_fleet_hardware_reports_unparseable"] == {(): 2}
    assert found["webug_fleet_hardware_reports_without_location"] == {(): 1}


def test_the_decode_lets_other_tasks_run_between_reports(every_item_a_slice):  # noqa: F811
    rows = [("Equinix", "fr5", report(GIB, cpu(2)))] * 100
    assert _loop_turns_during(lambda: add_reports(HardwareStats(), rows)) >= 99
