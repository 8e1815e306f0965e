"""Several webug processes on one BMDB, as uvicorn workers or replicas behind a load
balancer: a poll tag one process made is a 304 on another, and a browser never sees a
count older than one it was shown, whichever process answers."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from tests.fleet import ALIVE, mid
from tests.outage import serve_webug
from tests.support import cloned_database, execute, run_sync, webug_client

HTMX = {"HX-Request": "true"}

# Every fragment a page polls, as htmx asks for it.
FRAGMENTS = {
    "list": "/",
    "list, filtered": "/?provider=Equinix&limit=2",
    "machine": f"/machine/{mid(1)}/live",
    "watch": f"/watch?ids={mid(1)},{mid(2)}",
    "sessions": "/sessions",
    "session": f"/session/{ALIVE}/live",
    "overview": "/overview",
}


def data_part(ptag: str) -> str:
    """A tag without the count stamp: the view and the md5 of the data."""
    return ".".join(ptag.split(".")[:2])


@pytest.fixture(scope="module")
def two_processes(module_fleet_dsn, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """Two webug processes whose string hashes differ (as any two processes' do)."""
    logs = tmp_path_factory.mktemp("processes")
    with (
        serve_webug(module_fleet_dsn, logs / "a.log", PYTHONHASHSEED="1") as a,
        serve_webug(module_fleet_dsn, logs / "b.log", PYTHONHASHSEED="2") as b,
    ):
        yield a, b


@pytest.mark.parametrize("path", FRAGMENTS.values(), ids=FRAGMENTS.keys())
def test_a_tag_made_by_one_process_is_a_304_on_another(two_processes, path):
    a, b = two_processes
    with httpx.Client(timeout=10) as client:
        first = client.get(a + path, headers=HTMX)
        assert first.status_code == 200, first.text[:300]
        held = first.headers["HX-PTag"]
        on_b = client.get(b + path, headers={**HTMX, "HX-PTag": held})
        assert on_b.status_code == 304, on_b.text[:300]
        assert on_b.headers["HX-PTag"] == held
        # The same data, the same tag, whoever answers.
        fresh_b = client.get(b + path, headers=HTMX)
        assert data_part(fresh_b.headers["HX-PTag"]) == data_part(held)
        back_on_a = client.get(a + path, headers={**HTMX, "HX-PTag": fresh_b.headers["HX-PTag"]})
        assert back_on_a.status_code == 304


# --- counts retaken, counts of another process -----------------------------------------

FIRST_PAGE = "/?limit=2"  # mid(1), mid(2): machines added later sort after them
LATE = "ffffff{:02x}-0000-4000-8000-000000000000"


def add_machines(dsn: str, *ids: str) -> None:
    values = ", ".join(f"('{i}', now())" for i in ids)
    run_sync(execute(dsn, f"INSERT INTO machines (machine_id, machine_created_at) VALUES {values}"))


def shown_total(response: httpx.Response) -> int:
    return int(re.search(r"shown of (\d+)", response.text)[1])


@pytest.fixture
def fleet_dsn(pg_server_dsn, migrated_template) -> Iterator[str]:
    """A BMDB of ten machines that the test may add to."""
    with cloned_database(
        pg_server_dsn, migrated_template,
        "INSERT INTO machines SELECT (lpad(to_hex(g), 8, '0') || '-0000-4000-8000-000000000000')"
        "::uuid, now() FROM generate_series(1, 10) g",
    ) as dsn:  # fmt: skip
        yield dsn


def test_the_list_stays_304_while_its_count_is_retaken(fleet_dsn):
    with webug_client(fleet_dsn, count_cache_seconds=0) as client:  # counts every request
        first = client.get(FIRST_PAGE, headers=HTMX)
        assert shown_total(first) == 10
        held = first.headers["HX-PTag"]
        for _ in range(3):
            assert client.get("/", params={"limit": 2}).status_code == 200  # facets retaken
            again = client.get(FIRST_PAGE, headers={**HTMX, "HX-PTag": held})
            assert again.status_code == 304
        # A total that changed is shown, though the page's rows did not.
        add_machines(fleet_dsn, LATE.format(1))
        changed = client.get(FIRST_PAGE, headers={**HTMX, "HX-PTag": held})
        assert changed.status_code == 200 and shown_total(changed) == 11
        assert client.get(
            FIRST_PAGE, headers={**HTMX, "HX-PTag": changed.headers["HX-PTag"]}
        ).status_code == 304


def test_the_overview_stays_304_while_its_counts_are_retaken(fleet_dsn):
    with webug_client(fleet_dsn, count_cache_seconds=0) as client:
        held = client.get("/overview", headers=HTMX).headers["HX-PTag"]
        for _ in range(3):
            assert client.get("/overview", headers={**HTMX, "HX-PTag": held}).status_code == 304
        add_machines(fleet_dsn, LATE.format(1))
        changed = client.get("/overview", headers={**HTMX, "HX-PTag": held})
        assert changed.status_code == 200 and changed.headers["HX-PTag"] != held


@contextlib.contextmanager
def two_replicas(dsn: str) -> Iterator[tuple]:
    """Two webug apps on one BMDB whose counts are kept an hour: each keeps its own."""
    with (
        webug_client(dsn, count_cache_seconds=3600) as a,
        webug_client(dsn, count_cache_seconds=3600) as b,
    ):
        yield a, b


def test_a_replica_with_an_older_count_keeps_the_one_the_browser_shows(fleet_dsn):
    with two_replicas(fleet_dsn) as (a, b):
        assert shown_total(b.get(FIRST_PAGE, headers=HTMX)) == 10  # b keeps 10
        add_machines(fleet_dsn, *(LATE.format(n) for n in range(5)))
        from_a = a.get(FIRST_PAGE, headers=HTMX)  # a counts now: 15
        assert shown_total(from_a) == 15
        held = {**HTMX, "HX-PTag": from_a.headers["HX-PTag"]}
        # b's own count (10) is older than the browser's: the page is unchanged.
        assert b.get(FIRST_PAGE, headers=held).status_code == 304
        # The rows change: b shows them with the browser's total, not its own.
        add_machines(fleet_dsn, "00000000-0000-4000-8000-000000000000")
        changed = b.get(FIRST_PAGE, headers=held)
        assert changed.status_code == 200 and shown_total(changed) == 15
        assert changed.headers["HX-PTag"].split(".")[2] == from_a.headers["HX-PTag"].split(".")[2]
        # Without the browser's tag, b still has its own (a new page view, a count of its own).
        assert shown_total(b.get(FIRST_PAGE, headers=HTMX)) == 10


def test_a_replica_with_older_overview_counts_keeps_the_browsers(fleet_dsn):
    with two_replicas(fleet_dsn) as (a, b):
        old = b.get("/overview", headers=HTMX)
        add_machines(fleet_dsn, LATE.format(1))
        newer = a.get("/overview", headers=HTMX)
        assert newer.headers["HX-PTag"] != old.headers["HX-PTag"]
        assert b.get("/overview", headers={**HTMX, "HX-PTag": newer.headers["HX-PTag"]}) \
            .status_code == 304  # fmt: skip
        # A browser showing b's older counts gets a's newer ones.
        assert a.get("/overview", headers={**HTMX, "HX-PTag": old.headers["HX-PTag"]}) \
            .status_code == 200  # fmt: skip


def test_a_forged_count_stamp_reaches_no_one_else(fleet_dsn):
    with two_replicas(fleet_dsn) as (a, _):
        tag = a.get(FIRST_PAGE, headers=HTMX).headers["HX-PTag"]
        view, md5, stamp = tag.split(".")
        at = int(stamp.split("-")[0])
        forgeries = (f"{at + 1000}-999999", f"{at + 10**9}-5", "x-1", "1-2-3", "9" * 15, "9" * 40)
        for forged in forgeries:
            answer = a.get(FIRST_PAGE, headers={**HTMX, "HX-PTag": f"{view}.{md5}.{forged}"})
            assert answer.status_code in (200, 304)
        assert shown_total(a.get(FIRST_PAGE, headers=HTMX)) == 10
        # A stamp from the future beyond clock skew is not believed: its own count shows.
        future = a.get(FIRST_PAGE, headers={**HTMX, "HX-PTag": f"{view}.x.{at + 10**9}-5"})
        assert shown_total(future) == 10


# --- connections ----------------------------------------------------------------------


async def webug_connections(dsn: str) -> int:
    """webug's sessions on this BMDB, as PostgreSQL sees them."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'webug'"
        )
    finally:
        await conn.close()


def test_idle_connections_close_after_the_stated_time(fleet_dsn):
    with webug_client(fleet_dsn, pool_idle_seconds=1.5) as client:
        for path in ("/", "/overview", "/sessions", f"/machine/{mid(1)}"):
            assert client.get(path).status_code == 200
        assert run_sync(webug_connections(fleet_dsn)) >= 1
        time.sleep(0.5)
        assert run_sync(webug_connections(fleet_dsn)) >= 1  # kept for the next page
        deadline = time.monotonic() + 5
        while run_sync(webug_connections(fleet_dsn)) > 0:
            assert time.monotonic() < deadline, "idle connections stayed open"
            time.sleep(0.2)
        assert client.get("/").status_code == 200  # and are opened again when needed
