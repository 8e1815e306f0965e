"""Blobs: a page holds a bytea value's length and first bytes, never a whole hardware
report; the value links to a download of exactly its bytes (real PostgreSQL)."""

from __future__ import annotations

import os
import re

import pytest

from app.bmdb.columns import BLOB_PREVIEW_BYTES
from app.bmdb.machines import LIST_BLOB_BYTES
from app.render.values import HEX_FULL_MAX
from tests.fleet import machines_sql, mid
from tests.support import cloned_database, webug_client

BIG = os.urandom(2_000_000)  # a hardware report as big as real ones get
SMALL = b"\x0a\x03abc"  # a protobuf message small enough to show whole


@pytest.fixture(scope="module")
def client(pg_server_dsn, migrated_template):
    with (
        cloned_database(
            pg_server_dsn,
            migrated_template,
            machines_sql(1, 2),
            f"INSERT INTO machine_hardware_report VALUES ('{mid(1)}', '\\x{BIG.hex()}')",
            f"INSERT INTO machine_hardware_report VALUES ('{mid(2)}', '\\x{SMALL.hex()}')",
        ) as dsn,
        webug_client(dsn) as c,
    ):
        yield c


def test_a_big_blob_is_previewed_with_its_length_and_a_download(client):
    page = client.get(f"/machine/{mid(1)}")
    assert page.status_code == 200
    shown = f"the page holds the first {BLOB_PREVIEW_BYTES:,} of {len(BIG):,} bytes"
    assert shown in page.text
    assert BIG[:HEX_FULL_MAX].hex() in page.text and BIG[: HEX_FULL_MAX + 1].hex() not in page.text
    assert len(page.content) < 100_000  # not half a megabyte of hex
    link = f"/machine/{mid(1)}/tag/HardwareReport/hardware_report_raw"
    assert f'href="{link}" download' in page.text
    live = client.get(f"/machine/{mid(1)}/live", headers={"HX-Request": "true"})
    assert len(live.content) < 100_000


def test_the_download_is_the_exact_value(client):
    for machine, value in ((1, BIG), (2, SMALL)):
        got = client.get(f"/machine/{mid(machine)}/tag/HardwareReport/hardware_report_raw")
        assert got.status_code == 200 and got.content == value
        assert got.headers["content-type"] == "application/octet-stream"
        disposition = got.headers["content-disposition"]
        assert disposition.startswith("attachment;")
        assert f'filename="{mid(machine)}-HardwareReport-hardware_report_raw.bin"' in disposition


@pytest.mark.parametrize(
    ("path", "says"),
    [
        (f"/machine/{mid(1)}/tag/Nope/hardware_report_raw", "No tag field"),
        (f"/machine/{mid(1)}/tag/HardwareReport/nope", "No tag field"),
        (f"/machine/{mid(1)}/tag/Provided/provider_id", "has no Provided tag"),
        (f"/machine/{mid(9)}/tag/HardwareReport/hardware_report_raw", "has no HardwareReport"),
        ("/machine/not-a-uuid/tag/HardwareReport/hardware_report_raw", "is not a machine ID"),
    ],
)
def test_a_download_of_nothing_is_a_clear_error(client, path, says):
    response = client.get(path)
    assert response.status_code in (400, 404) and says in response.text


def test_a_small_blob_shows_whole_and_decoded(client):
    page = client.get(f"/machine/{mid(2)}").text
    assert 'class="pb-label">protobuf' in page and "abc" in page
    data = client.get(f"/machine/{mid(2)}?format=json").json()
    report = data["machine"]["tags"]["HardwareReport"]["hardware_report_raw"]
    assert report["complete"] is True and report["hex"] == SMALL.hex()


def test_json_twins_say_when_they_carry_only_the_start_of_a_blob(client):
    one = client.get(f"/machine/{mid(1)}?format=json").json()
    report = one["machine"]["tags"]["HardwareReport"]["hardware_report_raw"]
    assert report["complete"] is False and report["length"] == len(BIG)
    assert bytes.fromhex(report["hex"]) == BIG[:BLOB_PREVIEW_BYTES]
    listed = client.get("/?format=json").json()["machines"]
    report = listed[0]["tags"]["HardwareReport"]["hardware_report_raw"]
    assert report["length"] == len(BIG) and len(bytes.fromhex(report["hex"])) == LIST_BLOB_BYTES


def test_the_list_never_reads_blobs(client):
    page = client.get("/").text
    statements = re.findall(r"<pre>(SELECT[^<]*)</pre>", page)
    assert statements and not any("hardware_report_raw" in sql for sql in statements)
