"""Protobuf columns with field names from a FileDescriptorSet; schema-less stays the fallback.

The descriptor set is built here from a small .proto of our own, written as a
FileDescriptorProto (what protoc would produce for the source in PROTO_SOURCE).
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from app.bmdb.reflection import Field
from app.render.environment import build_environment
from app.render.protobuf_names import (
    ProtoConfigError,
    load_proto_names,
    named_json,
    reset,
    use,
)
from app.render.values import decode_bytes
from tests.support import cloned_database, webug_client

PROTO_SOURCE = """
syntax = "proto3";
package webugtest.hw;
import "google/protobuf/timestamp.proto";

enum DiskKind { DISK_KIND_UNKNOWN = 0; NVME = 1; SATA = 2; }
message Disk { string model = 1; uint64 size_bytes = 2; DiskKind kind = 3; }
message HardwareReport {
  string hostname = 1;
  repeated Disk disks = 2;
  map<string, string> labels = 3;
  google.protobuf.Timestamp collected_at = 4;
  bytes serial_raw = 5;
  double load = 6;
  sint32 temperature = 7;
}
"""
TYPE = "webugtest.hw.HardwareReport"
COLUMN = "hardware_report_raw"
F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, ftype: int, *, repeated: bool = False, type_name: str = ""):
    field = F(
        name=name,
        number=number,
        type=ftype,
        label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL,
        json_name="".join(w if i == 0 else w.title() for i, w in enumerate(name.split("_"))),
    )
    if type_name:
        field.type_name = type_name
    return field


def hardware_proto() -> descriptor_pb2.FileDescriptorProto:
    """PROTO_SOURCE as a FileDescriptorProto."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="webugtest/hw.proto",
        package="webugtest.hw",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    kind = proto.enum_type.add(name="DiskKind")
    for number, label in enumerate(["DISK_KIND_UNKNOWN", "NVME", "SATA"]):
        kind.value.add(name=label, number=number)
    disk = proto.message_type.add(name="Disk")
    disk.field.extend(
        [
            _field("model", 1, F.TYPE_STRING),
            _field("size_bytes", 2, F.TYPE_UINT64),
            _field("kind", 3, F.TYPE_ENUM, type_name=".webugtest.hw.DiskKind"),
        ]
    )
    report = proto.message_type.add(name="HardwareReport")
    entry = report.nested_type.add(name="LabelsEntry")
    entry.options.map_entry = True
    entry.field.extend([_field("key", 1, F.TYPE_STRING), _field("value", 2, F.TYPE_STRING)])
    report.field.extend(
        [
            _field("hostname", 1, F.TYPE_STRING),
            _field("disks", 2, F.TYPE_MESSAGE, repeated=True, type_name=".webugtest.hw.Disk"),
            _field(
                "labels",
                3,
                F.TYPE_MESSAGE,
                repeated=True,
                type_name=".webugtest.hw.HardwareReport.LabelsEntry",
            ),
            _field("collected_at", 4, F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp"),
            _field("serial_raw", 5, F.TYPE_BYTES),
            _field("load", 6, F.TYPE_DOUBLE),
            _field("temperature", 7, F.TYPE_SINT32),
        ]
    )
    return proto


def write_descriptor_set(path: Path, *, include_imports: bool) -> Path:
    files = []
    if include_imports:
        from google.protobuf import timestamp_pb2

        ts = descriptor_pb2.FileDescriptorProto()
        timestamp_pb2.DESCRIPTOR.CopyToProto(ts)
        files.append(ts)
    files.append(hardware_proto())
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=files).SerializeToString())
    return path


COLLECTED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def encoded_report() -> bytes:
    """A HardwareReport serialized by the protobuf library (as the agent would)."""
    pool = descriptor_pool.DescriptorPool()
    from google.protobuf import timestamp_pb2

    ts = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(ts)
    pool.Add(ts)
    pool.Add(hardware_proto())
    report_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(TYPE))
    msg = report_cls(hostname="node-17.fr5", load=0.25, temperature=-3, serial_raw=b"\x00\xff")
    msg.disks.add(model="Samsung PM9A3", size_bytes=3_840_000_000_000, kind=1)
    msg.disks.add(model="old <b>sata</b>", size_bytes=1, kind=2)
    msg.labels["rack"] = "r12"
    msg.collected_at.FromDatetime(COLLECTED)
    return msg.SerializeToString()


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory) -> Path:
    return write_descriptor_set(tmp_path_factory.mktemp("proto") / "hw.pb", include_imports=True)


@pytest.fixture
def active(descriptor_set):
    names = load_proto_names(descriptor_set, {COLUMN: TYPE})
    token = use(names)
    yield names
    reset(token)


# --- unit ----------------------------------------------------------------------------


def named_html(column: str, data: bytes, names) -> str | None:
    """The value as the page draws it with `names`, when it decodes by name; else None."""
    decoded = decode_bytes(data, Field(column, "bytea", "bytea", True, ()), names)
    if decoded.named is None:
        return None
    env = build_environment(names)
    return str(env.get_template("partials/values.html").module.bytes_value(decoded))


def test_named_html_shows_field_names_types_enums_and_well_known_types(active):
    html = named_html(COLUMN, encoded_report(), active)
    assert html is not None
    assert TYPE in html
    for text in (
        ">hostname<",
        "node-17.fr5",
        "disks",
        '<span class="pb-key">[0]</span>',
        '<span class="pb-key">[1]</span>',
        ">model<",
        "Samsung PM9A3",
        ">NVME<",
        ">SATA<",
        "size_bytes",
        "3840000000000",
        '<span class="pb-key">[&#39;rack&#39;]</span>',  # map key, quoted as a string
        "r12",
        "collected_at",
        "2024-05-06",  # the Timestamp as a date, not as seconds/nanos
        ">temperature<",
        "-3",  # sint32: zigzag decoded by the schema
    ):
        assert text in html, text
    assert "<b>sata</b>" not in html  # data is escaped
    assert "&lt;b&gt;sata&lt;/b&gt;" in html


def test_named_json_uses_field_names(active):
    out = named_json(COLUMN, encoded_report())
    assert out is not None
    assert out["protobuf_type"] == TYPE
    message = out["message"]
    assert message["hostname"] == "node-17.fr5"
    assert message["disks"][0] == {
        "model": "Samsung PM9A3",
        "size_bytes": "3840000000000",  # protobuf's JSON mapping: 64-bit ints as strings
        "kind": "NVME",
    }
    assert message["labels"] == {"rack": "r12"}
    assert message["collected_at"] == "2024-05-06T07:08:09Z"
    assert message["temperature"] == -3


def test_falls_back_when_not_configured_unmapped_or_unparseable(active, descriptor_set):
    assert named_html("some_other_column", encoded_report(), active) is None
    assert named_html(COLUMN, b"\xff\xff\xff\xff", active) is None  # not a message at all
    # Parses, but only into fields the type does not have: not that message.
    assert named_html(COLUMN, bytes([0xF8, 0x06, 0x01]), active) is None
    assert named_html(COLUMN, b"", active) is None
    assert named_html(COLUMN, encoded_report(), None) is None  # no descriptor set


def test_unknown_fields_are_mentioned(active):
    extra = bytes([0xF8, 0x06, 0x01])  # field 111, varint 1: newer than our schema
    html = named_html(COLUMN, encoded_report() + extra, active)
    assert html is not None and "hostname" in html
    assert "1 unknown field " in html


def test_imports_missing_from_the_set_come_from_the_library(tmp_path):
    path = write_descriptor_set(tmp_path / "hw.pb", include_imports=False)
    # A fresh interpreter: here timestamp_pb2 is already imported, which would hide a miss.
    script = (
        "import sys; from app.render.protobuf_names import load_proto_names; "
        f"names = load_proto_names(sys.argv[1], {{{COLUMN!r}: {TYPE!r}}}); "
        f"print(sorted(names.classes))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([COLUMN])


def test_types_missing_from_the_set_are_reported(descriptor_set, caplog):
    names = load_proto_names(
        descriptor_set, {COLUMN: TYPE, "os_installation_request_raw": "nope.Missing"}
    )
    assert names.missing == {"os_installation_request_raw": "nope.Missing"}
    assert "nope.Missing" in caplog.text


def test_unusable_descriptor_sets_are_refused(tmp_path):
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff\xff\xff")
    with pytest.raises(ProtoConfigError, match="not a binary FileDescriptorSet"):
        load_proto_names(garbage, {COLUMN: TYPE})
    lonely = descriptor_pb2.FileDescriptorProto(name="a.proto", dependency=["b.proto"])
    broken = tmp_path / "broken.pb"
    broken.write_bytes(descriptor_pb2.FileDescriptorSet(file=[lonely]).SerializeToString())
    with pytest.raises(ProtoConfigError, match="include_imports"):
        load_proto_names(broken, {COLUMN: TYPE})


def test_app_with_unusable_descriptor_set_stops_with_one_line(tmp_path):
    from app.config import Settings
    from app.main import create_app

    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff\xff\xff")
    with pytest.raises(SystemExit, match="WEBUG_PROTO_DESCRIPTORS"):
        create_app(Settings(dsn="postgresql://127.0.0.1:1/x", proto_descriptors=garbage))


# --- the machine page ----------------------------------------------------------------

MACHINE = "00000000-0000-4000-8000-0000000000a7"


@pytest.fixture(scope="module")
def reported_dsn(pg_server_dsn, migrated_template):
    report_hex = encoded_report().hex()
    with cloned_database(
        pg_server_dsn,
        migrated_template,
        f"INSERT INTO machines VALUES ('{MACHINE}', now())",
        f"INSERT INTO machine_hardware_report VALUES ('{MACHINE}', '\\x{report_hex}')",
    ) as dsn:
        yield dsn


def test_machine_page_shows_field_names_with_a_descriptor_set(reported_dsn, descriptor_set):
    with webug_client(
        reported_dsn, proto_descriptors=descriptor_set, proto_columns={COLUMN: TYPE}
    ) as client:
        page = client.get(f"/machine/{MACHINE}")
        assert page.status_code == 200
        assert TYPE in page.text
        assert 'class="pb-name"' in page.text and ">hostname<" in page.text
        assert ">NVME<" in page.text
        data = client.get(f"/machine/{MACHINE}?format=json").json()
    value = data["machine"]["tags"]["HardwareReport"][COLUMN]
    assert value["protobuf_type"] == TYPE
    assert value["message"]["hostname"] == "node-17.fr5"
    assert value["protobuf"]["1"] == "node-17.fr5"  # the schema-less twin is still there


def test_machine_page_without_descriptor_set_stays_schema_less(reported_dsn):
    with webug_client(reported_dsn) as client:
        page = client.get(f"/machine/{MACHINE}")
        assert page.status_code == 200
        assert 'class="pb-num"' in page.text and "node-17.fr5" in page.text
        assert 'class="pb-name"' not in page.text
        data = client.get(f"/machine/{MACHINE}?format=json").json()
    value = data["machine"]["tags"]["HardwareReport"]
    assert "message" not in value[COLUMN]
