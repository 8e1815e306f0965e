"""Protobuf columns decoded with field names, from a FileDescriptorSet.

With `WEBUG_PROTO_DESCRIPTORS` pointing to a binary FileDescriptorSet (`protoc
--include_imports --descriptor_set_out=bmdb.pb ...`) and `WEBUG_PROTO_COLUMNS` mapping
columns to fully qualified message types, those columns are parsed with the protobuf
library and shown with field names, types and enum labels. Everything else, and any
value that does not parse as its type, keeps the schema-less rendering
(app/render/protobuf_decode.py): a wrong or outdated descriptor set never hides data.

Which descriptor set applies is per application (tests run several side by side): pages
decode with the app's `ProtoNames`, which their template environment holds
(app/render/environment.py: `named_tree`); a JSON twin is serialized with the one made
current for its response (`use`, app/render/templating.py: `named_json`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_FIELDS = 5000  # named fields rendered at most; a bigger value falls back (to hex)

# Well-known types shown as what they mean rather than as their two fields.
_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"


class ProtoConfigError(Exception):
    """The descriptor set cannot be used (unreadable, not a FileDescriptorSet, inconsistent)."""


@dataclass(frozen=True)
class ProtoNames:
    """Message classes by column, built from one FileDescriptorSet."""

    source: str
    classes: Mapping[str, Any]  # column -> generated message class
    types: Mapping[str, str]  # column -> fully qualified message type
    missing: Mapping[str, str] = field(default_factory=dict)  # column -> type not in the set
    digest: str = ""  # of the set and the column mapping: a key for HTML decoded with it

    def parse(self, column: str, data: bytes) -> Any | None:
        """The message in `data`, or None (column not mapped, or not a message of its type)."""
        cls = self.classes.get(column)
        if cls is None:
            return None
        from google.protobuf.message import DecodeError

        msg = cls()
        try:
            msg.ParseFromString(data)
        except (DecodeError, RecursionError, ValueError) as exc:
            log.debug("%s does not parse as %s: %s", column, self.types[column], exc)
            return None
        if not msg.ListFields() and data:
            return None  # only unknown fields: these bytes are not that message
        return msg


def load_proto_names(path: Path, columns: Mapping[str, str]) -> ProtoNames:
    """Build the message classes for `columns` from the FileDescriptorSet at `path`.

    Imports missing from the set are taken from the protobuf library when it knows them
    (the well-known types); types not in the set are reported in `missing`.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf.message import DecodeError

    try:
        content = Path(path).read_bytes()
        fds = descriptor_pb2.FileDescriptorSet.FromString(content)
    except OSError as exc:
        raise ProtoConfigError(f"cannot read {path}: {exc}") from None
    except DecodeError as exc:
        raise ProtoConfigError(f"{path} is not a binary FileDescriptorSet: {exc}") from None
    if not fds.file:
        raise ProtoConfigError(f"{path} holds no .proto file descriptors")

    pool = descriptor_pool.DescriptorPool()
    by_name = {f.name: f for f in fds.file}
    added: set[str] = set()

    def add(name: str, chain: tuple[str, ...]) -> None:
        if name in added:
            return
        if name in chain:
            raise ProtoConfigError(f"{path}: import cycle through {name}")
        proto = by_name.get(name)
        if proto is None:
            proto = _library_file(name)
            if proto is None:
                raise ProtoConfigError(
                    f"{path}: {chain[-1]} imports {name}, which is not in the set"
                    " (build it with protoc --include_imports)"
                )
        for dependency in proto.dependency:
            add(dependency, (*chain, name))
        try:
            pool.Add(proto)
        except (TypeError, ValueError) as exc:  # conflicting or malformed definitions
            raise ProtoConfigError(f"{path}: {name}: {exc}") from None
        added.add(name)

    for name in by_name:  # dependencies first, whatever the order in the set
        add(name, ())

    classes: dict[str, Any] = {}
    types: dict[str, str] = {}
    missing: dict[str, str] = {}
    for column, type_name in columns.items():
        try:
            descriptor = pool.FindMessageTypeByName(type_name)
        except KeyError:
            missing[column] = type_name
            continue
        classes[column] = message_factory.GetMessageClass(descriptor)
        types[column] = type_name
    if missing:
        log.warning(
            "protobuf descriptor set %s lacks %s: those columns stay schema-less",
            path,
            ", ".join(f"{t} ({c})" for c, t in sorted(missing.items())),
        )
    digest = hashlib.blake2b(content + repr(sorted(columns.items())).encode(), digest_size=16)
    return ProtoNames(str(path), classes, types, missing, digest.hexdigest())


def _library_file(name: str) -> Any | None:
    """A .proto file the protobuf library itself ships (google/protobuf/*.proto)."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    if name.startswith("google/protobuf/") and name.endswith(".proto"):
        # Well-known types join the default pool when their module is first imported.
        module = name.removesuffix(".proto").replace("/", ".") + "_pb2"
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    try:
        known = descriptor_pool.Default().FindFileByName(name)
    except KeyError:
        return None
    proto = descriptor_pb2.FileDescriptorProto()
    known.CopyToProto(proto)
    return proto


# --- per request ---------------------------------------------------------------------

_current: ContextVar[ProtoNames | None] = ContextVar("webug_proto_names", default=None)


def from_settings(
    proto_descriptors: Path | None, proto_columns: Mapping[str, str]
) -> ProtoNames | None:
    """The configured descriptor set (WEBUG_PROTO_DESCRIPTORS), or None; a bad one stops
    webug at start with one line."""
    if proto_descriptors is None:
        return None
    try:
        return load_proto_names(proto_descriptors, proto_columns)
    except ProtoConfigError as exc:
        raise SystemExit(f"webug: invalid configuration: WEBUG_PROTO_DESCRIPTORS: {exc}") from None


def use(names: ProtoNames | None) -> Token:
    """Make `names` the descriptor set of the current request (undo with `reset`)."""
    return _current.set(names)


def reset(token: Token) -> None:
    _current.reset(token)


def current_digest() -> str | None:
    """What identifies the current request's descriptor set, for keys of rendered HTML."""
    names = _current.get()
    return None if names is None else names.digest


# --- decoding ------------------------------------------------------------------------


def _parse(column: str | None, data: bytes) -> tuple[ProtoNames, Any] | None:
    """(the request's descriptor set, the message) when that set maps `column` and `data`
    parses as its type; None otherwise."""
    names = _current.get()
    if names is None or column is None or not data:
        return None
    msg = names.parse(column, data)
    return None if msg is None else (names, msg)


def named_tree(names: ProtoNames | None, column: str | None, data: bytes) -> NamedMessage | None:
    """The message in `data` as a tree of named fields, when `names` maps `column` and
    `data` parses as its type; None = show it schema-less instead (also when it has more
    than MAX_FIELDS fields)."""
    if names is None or column is None or not data:
        return None
    msg = names.parse(column, data)
    if msg is None:
        return None
    try:
        tree = _message(msg, [MAX_FIELDS])
    except _TooBig:
        return None
    return replace(tree, type=names.types[column], source=Path(names.source).name)


def named_json(column: str | None, data: bytes) -> dict[str, object] | None:
    """{"protobuf_type": ..., "message": {field name: value}} (protobuf's JSON mapping)."""
    parsed = _parse(column, data)
    if parsed is None:
        return None
    names, msg = parsed
    from google.protobuf import json_format

    return {
        "protobuf_type": names.types[column],
        "message": json_format.MessageToDict(msg, preserving_proto_field_name=True),
    }


class _TooBig(Exception):
    pass


@dataclass(frozen=True, slots=True)
class EnumLabel:
    type: str  # the enum's full name
    number: int
    label: str | None  # None: not a label of the enum (newer data)


@dataclass(frozen=True, slots=True)
class NamedField:
    """One field of a decoded message: a nested message, an enum or a scalar value
    (int, float, str, bytes, bool; a Timestamp as a datetime, a Duration as a timedelta)."""

    name: str
    key: object  # its index in a repeated field, its key in a map; None for a single field
    number: int
    kind: str  # its type's name: int64, string, a message's or an enum's name
    message: NamedMessage | None = None
    enum: EnumLabel | None = None
    value: object = None


@dataclass(frozen=True, slots=True)
class NamedMessage:
    fields: list[NamedField]
    unknown: int  # fields the descriptor set does not know (newer data)
    type: str | None = None  # the top message's full name, and the descriptor file
    source: str | None = None


def _message(msg: Any, budget: list[int]) -> NamedMessage:
    fields: list[NamedField] = []
    for fd, value in msg.ListFields():
        if _is_map(fd):
            value_fd = fd.message_type.fields_by_name["value"]
            fields += [_field(fd.name, repr(k), value_fd, value[k], budget) for k in sorted(value)]
        elif _is_repeated(fd):
            fields += [_field(fd.name, i, fd, item, budget) for i, item in enumerate(value)]
        else:
            fields.append(_field(fd.name, None, fd, value, budget))
    return NamedMessage(fields, _unknown_count(msg))


def _field(name: str, key: object, fd: Any, value: Any, budget: list[int]) -> NamedField:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig
    field = NamedField(name, key, fd.number, _type_name(fd))
    if fd.message_type is not None:
        well_known = _well_known(fd.message_type.full_name, value)
        if well_known is not None:
            return replace(field, value=well_known)
        return replace(field, message=_message(value, budget))
    if fd.enum_type is not None:
        label = fd.enum_type.values_by_number.get(value)
        return replace(
            field, enum=EnumLabel(fd.enum_type.full_name, value, label.name if label else None)
        )
    return replace(field, value=value)


def _well_known(full_name: str, value: Any) -> object | None:
    """A Timestamp as a datetime, a Duration as a timedelta; None for other messages, and
    for values out of Python's range (then shown as their seconds and nanos)."""
    try:
        if full_name == _TIMESTAMP:
            return value.ToDatetime(tzinfo=UTC)
        if full_name == _DURATION:
            return timedelta(seconds=value.seconds, microseconds=value.nanos / 1000)
    except (OverflowError, ValueError):
        return None
    return None


_SCALARS = {
    "TYPE_DOUBLE": "double",
    "TYPE_FLOAT": "float",
    "TYPE_INT64": "int64",
    "TYPE_UINT64": "uint64",
    "TYPE_INT32": "int32",
    "TYPE_FIXED64": "fixed64",
    "TYPE_FIXED32": "fixed32",
    "TYPE_BOOL": "bool",
    "TYPE_STRING": "string",
    "TYPE_BYTES": "bytes",
    "TYPE_UINT32": "uint32",
    "TYPE_SFIXED32": "sfixed32",
    "TYPE_SFIXED64": "sfixed64",
    "TYPE_SINT32": "sint32",
    "TYPE_SINT64": "sint64",
}


def _type_name(fd: Any) -> str:
    if fd.message_type is not None:
        return fd.message_type.name
    if fd.enum_type is not None:
        return fd.enum_type.name
    for attr, name in _SCALARS.items():
        if fd.type == getattr(fd, attr):
            return name
    return "?"


def _is_repeated(fd: Any) -> bool:
    repeated = getattr(fd, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return fd.label == fd.LABEL_REPEATED  # protobuf < 5.28


def _is_map(fd: Any) -> bool:
    return (
        fd.message_type is not None and _is_repeated(fd) and fd.message_type.GetOptions().map_entry
    )


def _unknown_count(msg: Any) -> int:
    try:
        from google.protobuf.unknown_fields import UnknownFieldSet
    except ImportError:  # older protobuf
        return len(msg.UnknownFields())
    return len(UnknownFieldSet(msg))
