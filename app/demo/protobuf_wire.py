"""A tiny protobuf wire-format encoder, plus builders for the BMDB's blobs.

The demo stores real protobuf bytes in the `*_raw` columns so that webug's
decoding paths see what production holds, without shipping .proto files or
generated code. Field numbers and shapes follow upstream Monogon
(`cloud/agent/api/hwreport.proto`, `cloud/bmaas/server/api/agent.proto`).
"""

from __future__ import annotations

import functools
import random
import struct
from typing import NamedTuple

VARINT, I64, LEN, I32 = 0, 1, 2, 5


_SMALL = [bytes((i,)) for i in range(128)]  # seeding encodes millions of varints


def varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _SMALL[n]
    # Negative int32/int64 values are encoded as their 64-bit two's complement.
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@functools.cache
def _key(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def f_varint(field: int, value: int | bool) -> bytes:
    # proto3 omits default (zero) scalars; so do we, like real serializers.
    return _key(field, VARINT) + varint(int(value)) if value else b""


def f_bytes(field: int, data: bytes) -> bytes:
    n = len(data)
    return b"".join((_key(field, LEN), _SMALL[n] if n < 128 else varint(n), data))


def f_string(field: int, text: str) -> bytes:
    return f_bytes(field, text.encode()) if text else b""


def f_message(field: int, body: bytes) -> bytes:
    # A present-but-empty submessage is meaningful (oneof arms), so always emit.
    return f_bytes(field, body)


def f_packed(field: int, values: list[int]) -> bytes:
    return f_bytes(field, b"".join(varint(v) for v in values)) if values else b""


def f_float(field: int, value: float) -> bytes:
    return _key(field, I32) + struct.pack("<f", value) if value else b""


def f_fixed64(field: int, value: int) -> bytes:
    return _key(field, I64) + struct.pack("<Q", value) if value else b""


def message(*fields: bytes) -> bytes:
    return b"".join(fields)


# --- cloud.agent.api hardware report ----------------------------------------

GIB, TB, GBIT = 1 << 30, 10**12, 125_000_000  # speeds are in bytes per second

_SCSI, _ATA, _NVME = 1, 2, 3  # BlockDevice.Protocol


class Disk(NamedTuple):
    vendor: str
    model: str
    capacity_bytes: int
    rotational: bool
    protocol: int
    count: int


class Nic(NamedTuple):
    driver: str
    speeds_gbit: tuple[int, ...]
    count: int


class Profile(NamedTuple):
    """A server model; every report of one differs only in serials, MACs and health."""

    manufacturer: str
    product: str
    cpu_vendor: str
    cpu_model: str
    cpu_family_model_stepping: tuple[int, int, int]
    sockets: int
    cores: int
    threads_per_core: int
    memory_gib: int
    disks: tuple[Disk, ...]
    nics: tuple[Nic, ...]


HARDWARE_PROFILES = (
    Profile(
        "Supermicro",
        "SYS-5019C-MR",
        "GenuineIntel",
        "Intel(R) Xeon(R) E-2278G CPU @ 3.40GHz",
        (6, 158, 13),
        sockets=1,
        cores=8,
        threads_per_core=2,
        memory_gib=32,
        disks=(Disk("ATA", "Micron_5300_MTFDDAK480TDS", 480 * 10**9, False, _ATA, 2),),
        nics=(Nic("i40e", (1, 10), 2),),
    ),
    Profile(
        "Dell Inc.",
        "PowerEdge R6515",
        "AuthenticAMD",
        "AMD EPYC 7502P 32-Core Processor",
        (23, 49, 0),
        sockets=1,
        cores=32,
        threads_per_core=2,
        memory_gib=256,
        disks=(
            Disk("ATA", "MZ7KH240HAHQ0D3", 240 * 10**9, False, _ATA, 2),
            Disk("", "Dell Ent NVMe P5600 MU U.2 3.2TB", 3_200 * 10**9, False, _NVME, 2),
        ),
        nics=(Nic("mlx5_core", (10, 25), 2),),
    ),
    Profile(
        "Supermicro",
        "SYS-120U-TNR",
        "GenuineIntel",
        "Intel(R) Xeon(R) Gold 6314U CPU @ 2.30GHz",
        (6, 106, 6),
        sockets=1,
        cores=32,
        threads_per_core=2,
        memory_gib=512,
        disks=(Disk("", "SAMSUNG MZQL23T8HCLS-00A07", 3_840 * 10**9, False, _NVME, 2),),
        nics=(Nic("ice", (10, 25), 4),),
    ),
    Profile(
        "Dell Inc.",
        "PowerEdge R740xd2",
        "GenuineIntel",
        "Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz",
        (6, 85, 7),
        sockets=2,
        cores=12,
        threads_per_core=2,
        memory_gib=192,
        disks=(
            Disk("ATA", "MZ7KH480HAHQ0D3", 480 * 10**9, False, _ATA, 2),
            Disk("SEAGATE", "ST12000NM004J", 12 * TB, True, _SCSI, 12),
        ),
        nics=(Nic("bnxt_en", (10, 25), 2), Nic("igb", (1,), 2)),
    ),
    Profile(
        "HPE",
        "ProLiant DL360 Gen10",
        "GenuineIntel",
        "Intel(R) Xeon(R) Gold 5218 CPU @ 2.30GHz",
        (6, 85, 7),
        sockets=2,
        cores=16,
        threads_per_core=2,
        memory_gib=384,
        disks=(Disk("HPE", "VK000960GWSRT", 960 * 10**9, False, _SCSI, 2),),
        nics=(Nic("bnx2x", (10,), 2), Nic("tg3", (1,), 4)),
    ),
)

HARDWARE_WARNINGS = (
    "DMI memory information unavailable, falling back to sysfs memory blocks",
    "failed to read SMART data from /dev/sdb: SG_IO: bad/missing sense data",
    "EFI variables not accessible: efivarfs not mounted",
    "network interface eno3 has no link, skipping speed detection",
)


def _serial(rng: random.Random, prefix: str, n: int) -> str:
    return prefix + rng.randbytes((n + 1) // 2).hex().upper()[:n]


@functools.cache
def _block_device_parts(disk: Disk) -> tuple[bytes, bytes]:
    """The fields of a disk model that are the same for every unit (before and
    after the serial/WWN); cached because seeding builds ~100k reports."""
    head = message(f_string(1, disk.vendor), f_string(2, disk.model))
    tail = message(
        f_varint(5, disk.rotational),
        f_varint(6, disk.capacity_bytes),
        f_varint(7, 512),
        f_varint(8, 512 if disk.rotational else 4096),
        f_varint(9, disk.protocol),
    )
    return head, tail


_MEDIA_ERRORS = f_varint(11, 3)


def _block_device(rng: random.Random, disk: Disk) -> bytes:
    head, tail = _block_device_parts(disk)
    wwn = f_bytes(4, rng.randbytes(8)) if disk.protocol != _NVME else b""
    media_errors = _MEDIA_ERRORS if rng.random() < 0.05 else b""
    return f_message(11, message(head, f_string(3, _serial(rng, "", 14)), wwn, tail, media_errors))


@functools.cache
def _nic_parts(nic: Nic) -> tuple[bytes, bytes]:
    """(driver and speeds, link-up fields) of a NIC model; cached like disks."""
    speeds = [s * GBIT for s in nic.speeds_gbit]
    model = message(f_string(2, nic.driver), f_packed(3, speeds))
    return model, message(f_varint(4, True), f_varint(5, speeds[-1]))


def _nic(rng: random.Random, nic: Nic, mac: bytes) -> bytes:
    model, link = _nic_parts(nic)
    return f_message(12, message(f_bytes(1, mac), model, link if rng.random() < 0.8 else b""))


@functools.cache
def _cpu(profile: Profile) -> bytes:
    """One CPU (field 10 of Node) of a hardware profile, encoded once."""
    x86_64 = message(*(f_varint(i, v) for i, v in enumerate(profile.cpu_family_model_stepping, 1)))
    return f_message(
        10,
        message(
            f_message(1, x86_64),
            f_varint(8, profile.cores),
            f_varint(9, profile.cores * profile.threads_per_core),
            f_string(10, profile.cpu_vendor),
            f_string(11, profile.cpu_model),
        ),
    )


def hardware_report(rng: random.Random) -> bytes:
    """An AgentHardwareReport: {1: cloud.agent.api.Node report, 2: repeated warning}."""
    profile = rng.choice(HARDWARE_PROFILES)
    oui = rng.choice((b"\x3c\xec\xef", b"\xb8\x59\x9f", b"\x0c\x42\xa1", b"\x40\xa6\xb7"))
    base_mac = oui + rng.randbytes(3)
    nics = [nic for nic in profile.nics for _ in range(nic.count)]
    node = message(
        f_string(1, profile.manufacturer),
        f_string(2, profile.product),
        f_string(3, _serial(rng, "S", 9)),
        f_varint(8, profile.memory_gib * GIB),
        f_float(9, rng.uniform(0.96, 0.99)),
        _cpu(profile) * profile.sockets,
        *[_block_device(rng, disk) for disk in profile.disks for _ in range(disk.count)],
        # Consecutive MACs, like the ports of one board.
        *[
            _nic(rng, nic, base_mac[:5] + bytes([(base_mac[5] + i) & 0xFF]))
            for i, nic in enumerate(nics)
        ],
        f_varint(13, 4 if rng.random() < 0.95 else 1),  # EFI_ENABLED, sometimes EFI_UNKNOWN
    )
    warnings = rng.sample(HARDWARE_WARNINGS, k=rng.choice((0, 0, 0, 0, 0, 0, 1, 1, 2)))
    return message(f_message(1, node), *(f_string(2, w) for w in warnings))


# --- cloud.bmaas.server.api OS installation ----------------------------------


def os_installation_request(rng: random.Random, generation: int) -> bytes:
    """OSInstallationRequest: {1: generation, 2: MetropolisInstallationRequest}.

    The Metropolis arm carries a bundle URL, NodeParameters (a ClusterRegister
    with an opaque ticket and CA certificate) and a root device name.
    """
    version = rng.choice(("0.1.0", "0.1.1", "0.2.0"))
    register = message(
        f_bytes(1, rng.randbytes(32)),  # register_ticket
        f_bytes(3, b"\x30\x82\x01\x8a" + rng.randbytes(48)),  # DER-looking CA certificate
    )
    metropolis = message(
        f_string(1, f"https://artifacts.example.com/metropolis/bundle-{version}.zip"),
        f_message(2, f_message(2, register)),
        f_string(3, rng.choice(("nvme0n1", "sda", "nvme1n1"))),
    )
    return message(f_varint(1, generation), f_message(2, metropolis))


def os_installation_report(generation: int, error: str | None = None) -> bytes:
    """OSInstallationReport: {1: generation, oneof {2: Success{}, 3: Error{1: error}}}."""
    result = f_message(3, f_string(1, error)) if error else f_message(2, b"")
    return message(f_varint(1, generation), result)
