"""Sorting the machine list by its column headers, and its CSV download, in Chromium.

Six machines with known values are added to the e2e fleet (removed again at teardown)
and singled out with the provider ID prefix filter (q=e2esort-): their created times,
heartbeats (two without one, a tie) and active backoffs (UnitTest processes, which the
seeded fleet never uses) give every order a known answer.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e.e2e_db import Db
from e2e.test_machine_pages import query_of


def machine(n: int) -> uuid.UUID:
    return uuid.UUID(f"e2e50000-0000-4000-8000-{n:012x}")


CREATED = {1: "2023-01-03", 2: "2023-01-01", 3: "2023-01-05", 4: "2023-01-01", 5: "2023-01-02",
           6: "2023-01-04"}  # fmt: skip
HEARTBEAT = {1: "2024-01-01T10:00:00Z", 3: "2024-01-01T09:00:00Z", 4: "2024-01-01T10:00:00Z",
             6: "2024-01-01T08:00:00Z"}  # fmt: skip
BACKOFF_MINUTES = {5: 10, 6: 20, 2: 30}  # active UnitTest1 backoffs end in this many minutes

ORDERS = {  # by hand from the values above; ties by machine ID
    "id": [1, 2, 3, 4, 5, 6],
    "created": [2, 4, 5, 1, 6, 3],
    "-created": [3, 6, 1, 5, 4, 2],
    "backoff": [5, 6, 2, 1, 3, 4],  # then the machines without an active one, by ID
    "heartbeat": [6, 3, 1, 4, 2, 5],
    "-heartbeat": [4, 1, 3, 6, 5, 2],  # keyless last, by ID descending
}


@pytest.fixture
def fleet(db: Db) -> Iterator[None]:
    ids = [machine(n) for n in CREATED]
    db.cleanup("DELETE FROM machines WHERE machine_id = ANY($1::uuid[])", ids)
    for table in ("work_backoff", "machine_agent_heartbeat", "machine_provided"):
        db.cleanup(f"DELETE FROM {table} WHERE machine_id = ANY($1::uuid[])", ids)
    for n, day in CREATED.items():
        db.execute("INSERT INTO machines VALUES ($1, $2::text::timestamptz)", machine(n), day)
        db.execute(
            "INSERT INTO machine_provided (machine_id, provider, provider_id) VALUES"
            " ($1, 'Lumen', $2)",
            machine(n),
            f"e2esort-{n}",
        )
    for n, at in HEARTBEAT.items():
        db.execute(
            "INSERT INTO machine_agent_heartbeat VALUES ($1, $2::text::timestamptz)", machine(n), at
        )
    for n, minutes in BACKOFF_MINUTES.items():
        db.execute(
            "INSERT INTO work_backoff VALUES ($1, 'UnitTest1', now() + make_interval(mins => $2),"
            " 'e2e sort', 60)",
            machine(n),
            minutes,
        )
    db.execute(  # an expired backoff sets no key
        "INSERT INTO work_backoff VALUES ($1, 'UnitTest2', now() - interval '1 hour', 'old', 60)",
        machine(1),
    )
    yield


def shown(page: Page) -> list[int]:
    ids = page.locator("#machine-table tbody tr[id^='m-']").evaluate_all(
        "rows => rows.map(r => r.id.slice(2))"
    )
    by_id = {str(machine(n)): n for n in CREATED}
    return [by_id[i] for i in ids]


def click_header(page: Page, label: str, sort: str | None) -> None:
    page.locator("#machine-table thead a.sort", has_text=label).click()
    page.wait_for_url(lambda url: query_of(url).get("sort") == ([sort] if sort else None))
    query = query_of(page.url)
    assert query["q"] == ["e2esort-"] and query["limit"] == ["50"], query  # filters kept
    assert "after" not in query
    expect(page.locator("#machine-table tbody tr[id^='m-']")).to_have_count(6)


def test_column_headers_sort_the_list(page: Page, page_errors: list[str], fleet, screenshot):
    page.goto("/?q=e2esort-&limit=50")
    assert shown(page) == ORDERS["id"]
    expect(page.locator("#sort-note")).to_have_count(0)

    click_header(page, "Created", "created")
    assert shown(page) == ORDERS["created"]
    expect(page.locator("#machine-table th[aria-sort='ascending']")).to_contain_text("Created ▲")
    expect(page.locator("#sort-note")).to_contain_text("Sorted by created time, oldest first")
    click_header(page, "Created", "-created")
    assert shown(page) == ORDERS["-created"]
    expect(page.locator("#machine-table th[aria-sort='descending']")).to_contain_text("Created")

    click_header(page, "Backoff", "backoff")
    assert shown(page) == ORDERS["backoff"]
    click_header(page, "Heartbeat", "heartbeat")
    assert shown(page) == ORDERS["heartbeat"]
    expect(page.locator("#sort-note")).to_contain_text("machines without one come last")
    screenshot(page, "by-heartbeat")
    click_header(page, "Heartbeat", "-heartbeat")
    assert shown(page) == ORDERS["-heartbeat"]
    click_header(page, "Machine", None)
    assert shown(page) == ORDERS["id"]
    assert page_errors == []


def test_keyset_pages_of_an_order_in_the_browser(page: Page, page_errors: list[str], fleet):
    page.goto("/?q=e2esort-&sort=-heartbeat&limit=4")
    assert shown(page) == ORDERS["-heartbeat"][:4]
    page.get_by_role("link", name="next page »").click()
    page.wait_for_url(lambda url: "after" in query_of(url))
    expect(page.locator("#machine-table tbody tr[id^='m-']")).to_have_count(2)
    assert shown(page) == ORDERS["-heartbeat"][4:]
    assert query_of(page.url)["sort"] == ["-heartbeat"]
    assert page_errors == []


def test_csv_download_of_the_sorted_view(page: Page, page_errors: list[str], fleet):
    page.goto("/?q=e2esort-&sort=-heartbeat&limit=50")
    link = page.locator("#csv-download")
    expect(link).to_have_text("Download CSV")
    expect(page.locator("#csv-cap")).to_contain_text("at most 100000 rows")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == "webug-machines.csv"
    with open(download.path(), encoding="utf-8", newline="") as f:
        table = list(csv.reader(f))
    header, rows = table[0], [dict(zip(table[0], r, strict=True)) for r in table[1:]]
    assert header[:4] == ["machine_id", "created_at", "work", "backoffs"]
    assert "AgentHeartbeat.agent_heartbeat_at" in header and "Provided.provider_id" in header
    assert [r["machine_id"] for r in rows] == [str(machine(n)) for n in ORDERS["-heartbeat"]]
    for row in rows:
        n = int(row["Provided.provider_id"].removeprefix("e2esort-"))
        assert row["machine_id"] == str(machine(n))
        assert row["AgentHeartbeat.agent_heartbeat_at"] == HEARTBEAT.get(n, "")
        assert row["created_at"].startswith(CREATED[n] + "T00:00:00")
        assert ("UnitTest1 until" in row["backoffs"]) == (n in BACKOFF_MINUTES)
    head = page.request.get(link.get_attribute("href"))
    assert head.headers["x-webug-row-cap"] == "100000"
    assert io.StringIO(head.text()).readline().startswith('"machine_id"')
    assert page_errors == []
