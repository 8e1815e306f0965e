"""`bmdb_hwstats_region_*`: the hardware reports summed per provider and location, as
upstream's exporter computed them (docs/operating.md, "Fleet gauges").

Each `hardware_report_raw` is parsed with the protobuf library, from a descriptor of the
three messages built here (the fields upstream read, with their field numbers); every
other field stays an unknown field, which the parser keeps without failing. A report is
unparseable only when its bytes are not protobuf (or, as for upstream's proto3 messages,
a declared string is not UTF-8). Parsing runs a slice at a time (app/slices.py): a
hundred thousand reports must not hold the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from app.slices import Pacer

log = logging.getLogger(__name__)

PACKAGE = "webug.fleet.hwreport"
_F = descriptor_pb2.FieldDescriptorProto

# (message, [(field name, number, type, repeated, message type)]): upstream's
# AgentHardwareReport (cloud.bmaas.server.api), Node and CPU (cloud.agent.api).
MESSAGES = (
    ("AgentHardwareReport", [
        ("report", 1, _F.TYPE_MESSAGE, False, "Node"),
        ("warning", 2, _F.TYPE_STRING, True, None),
    ]),
    ("Node", [
        ("manufacturer", 1, _F.TYPE_STRING, False, None),
        ("product", 2, _F.TYPE_STRING, False, None),
        ("serial_number", 3, _F.TYPE_STRING, False, None),
        ("memory_installed_bytes", 8, _F.TYPE_INT64, False, None),
        ("memory_usable_ratio", 9, _F.TYPE_FLOAT, False, None),
        ("cpu", 10, _F.TYPE_MESSAGE, True, "CPU"),
    ]),
    ("CPU", [
        ("hardware_threads", 9, _F.TYPE_INT32, False, None),
    ]),
)  # fmt: skip


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="webug/fleet/hwreport.proto", package=PACKAGE, syntax="proto3"
    )
    for name, fields in MESSAGES:
        message = proto.message_type.add(name=name)
        for field_name, number, kind, repeated, type_name in fields:
            message.field.add(
                name=field_name, number=number, type=kind,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
                type_name=f".{PACKAGE}.{type_name}" if type_name else None,
            )  # fmt: skip
    return proto


@cache
def report_class() -> type:
    """The AgentHardwareReport message class, in a descriptor pool of its own."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_descriptor())
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{PACKAGE}.AgentHardwareReport")
    )


@dataclass
class Region:
    nodes: int = 0
    ram_bytes: int = 0
    cpu_threads: int = 0


@dataclass
class HardwareStats:
    regions: dict[tuple[str, str], Region] = field(default_factory=dict)  # (provider, location)
    reports: int = 0  # read
    unparseable: int = 0  # skipped: not protobuf
    without_location: int = 0  # skipped: the machine has no provider_location


async def add_reports(stats: HardwareStats, rows: Iterable[Any]) -> HardwareStats:
    """`stats` with rows of (..., provider, location, report bytes) added, a slice at a
    time."""
    report = report_class()()
    pacer = Pacer()
    for *_, provider, location, raw in rows:
        stats.reports += 1
        try:
            report.ParseFromString(raw)
        except (DecodeError, RecursionError, ValueError) as exc:
            stats.unparseable += 1
            log.debug("hardware report of a %s machine in %s does not parse: %s",
                      provider, location, exc)  # fmt: skip
        else:
            if location is None:
                stats.without_location += 1
            else:
                region = stats.regions.setdefault((provider, location), Region())
                node = report.report
                region.nodes += 1
                region.ram_bytes += node.memory_installed_bytes
                region.cpu_threads += sum(cpu.hardware_threads for cpu in node.cpu)
        await pacer.turn()
    return stats
