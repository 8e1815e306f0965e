"""Resilience on a real PostgreSQL: outages (at start, while running, mid-query), schema
drift, read-only sessions, statement timeouts, locked tables and a short soak.

Outage tests stop and start a PostgreSQL of their own (tests/outage.py), never the
shared test server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import re
import threading
import time
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from app.bmdb.connection import Reader
from app.bmdb.dsn import database_name
from tests.fleet import load_small_fleet, mid
from tests.outage import REPO, RestartablePostgres, free_port, serve_webug
from tests.support import TableLock, execute, run_sync, webug_client

HTMX = {"HX-Request": "true"}
UNREACHABLE = "BMDB unreachable, retrying"


@pytest.fixture(scope="module")
def own_pg() -> Iterator[RestartablePostgres]:
    server = RestartablePostgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def own_bmdb(own_pg: RestartablePostgres) -> str:
    return own_pg.create_bmdb(40)


@pytest.fixture
def running(own_pg: RestartablePostgres) -> Iterator[RestartablePostgres]:
    """own_pg, started again after the test whatever happened."""
    try:
        yield own_pg
    finally:
        if not own_pg.running:
            own_pg.start()


def any_machine(dsn: str) -> uuid.UUID:
    async def first() -> uuid.UUID:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(
                "SELECT m.machine_id FROM machines m JOIN machine_provided p USING (machine_id)"
                " ORDER BY 1 LIMIT 1"
            )
        finally:
            await conn.close()

    return run_sync(first())


# ------------------------------------------------------------------------ outages


def test_starts_when_nothing_listens_pages_say_unreachable_and_healthz_is_503():
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/bmdb"
    with webug_client(dsn) as client:
        page = client.get("/")
        assert page.status_code == 503 and UNREACHABLE in page.text and "<h1>" in page.text
        assert client.get("/healthz").status_code == 503
        fragment = client.get(f"/machine/{mid(1)}/live", headers=HTMX)
        assert fragment.status_code == 503 and UNREACHABLE in fragment.text
        as_json = client.get("/?format=json")
        assert as_json.status_code == 503 and as_json.json()["error"] == UNREACHABLE
        schema = client.get("/schema?format=json")  # served from the (empty) cache
        assert schema.status_code == 200 and schema.json()["loaded"] is False


def test_connects_by_itself_as_soon_as_the_bmdb_is_back(running, own_bmdb):
    running.stop()
    with webug_client(own_bmdb) as client:
        assert client.get("/").status_code == 503
        assert client.get("/healthz").status_code == 503
        # Long enough for the rate limit of load attempts, far shorter than the refresh
        # task's backoff would make webug wait once the BMDB had been down a while.
        time.sleep(1.1)
        running.start()
        back = time.monotonic()
        page = client.get("/")  # the very first request after the restart
        print(f"\nfirst page {time.monotonic() - back:.2f} s after the BMDB restarted")
        assert page.status_code == 200, page.text[:500]
        assert client.get("/schema?format=json").json()["loaded"] is True
        assert client.get("/healthz").status_code == 200


def test_pages_and_fragments_recover_after_a_restart(running, own_bmdb):
    machine = any_machine(own_bmdb)
    with webug_client(own_bmdb) as client:
        before = client.get(f"/machine/{machine}/live", headers=HTMX)
        assert before.status_code == 200 and str(machine) in before.text
        running.stop()
        down = client.get(f"/machine/{machine}/live", headers=HTMX)
        assert down.status_code == 503 and UNREACHABLE in down.text
        assert client.get(f"/machine/{machine}").status_code == 503
        assert client.get("/healthz").status_code == 503
        running.start()
        back = time.monotonic()
        after = client.get(f"/machine/{machine}/live", headers=HTMX)  # the pool reconnects
        print(f"\nfragment {time.monotonic() - back:.2f} s after the BMDB restarted")
        assert after.status_code == 200 and str(machine) in after.text
        assert client.get("/healthz").status_code == 200


def wait_for_webug_lock_waits(dsn: str, count: int) -> None:
    """Until `count` webug sessions wait for a lock (their queries are in flight)."""

    async def waiting() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'webug' AND wait_event_type = 'Lock'"
            )
        finally:
            await conn.close()

    deadline = time.monotonic() + 10
    while run_sync(waiting()) < count:
        assert time.monotonic() < deadline, "webug's query never reached the lock"
        time.sleep(0.05)


def test_a_query_cut_by_a_shutdown_is_a_503_not_a_500(running, own_bmdb):
    machine = any_machine(own_bmdb)
    with (
        webug_client(own_bmdb, statement_timeout_ms=60_000) as client,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        assert client.get("/healthz").status_code == 200
        with TableLock(own_bmdb, "machines"):
            pending = pool.submit(client.get, f"/machine/{machine}")
            wait_for_webug_lock_waits(own_bmdb, 1)
            running.stop("fast")  # ends every session: webug's query gets AdminShutdown
            response = pending.result(timeout=30)
        assert response.status_code == 503 and UNREACHABLE in response.text
        assert "AdminShutdown" in response.text or "Connection" in response.text


def test_a_bmdb_error_after_the_page_was_sent_does_not_break_the_answer():
    """The BMDB dying while a finished page's read transaction is rolled back (seen in the
    soak) must not turn a complete answer into a dropped connection."""
    from types import SimpleNamespace

    from app.config import Settings
    from app.http.resilience import ResilienceMiddleware

    async def page_then_rollback_fails(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"the page"})
        cause = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")
        raise RuntimeError("Caught handled exception, but response already started.") from cause

    async def before_the_answer(scope, receive, send):
        raise RuntimeError("a bug") from asyncpg.ConnectionDoesNotExistError("closed")

    async def call(inner) -> list[dict]:
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/machine/x/live",
            "headers": [],
            "app": SimpleNamespace(state=SimpleNamespace(schema_cache=None)),
        }
        middleware = ResilienceMiddleware(inner, Settings(dsn="postgresql://x@127.0.0.1:1/x"))
        await middleware(scope, None, send)
        return sent

    sent = run_sync(call(page_then_rollback_fails))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    with pytest.raises(RuntimeError, match="a bug"):  # before the answer: not hidden
        run_sync(call(before_the_answer))


def test_a_download_cut_by_the_bmdb_logs_one_line_and_no_traceback(small_fleet_dsn, tmp_path):
    """The CSV's header is sent before its first statement: a statement that fails then
    (here the statement timeout, machines being locked) cuts the download. The client sees
    it cut; the log says so in one line."""
    import httpx

    log = tmp_path / "webug.log"
    with serve_webug(small_fleet_dsn, log, WEBUG_STATEMENT_TIMEOUT_MS="300") as base_url:
        with TableLock(small_fleet_dsn, "machines"), httpx.stream(
            "GET", base_url + "/?format=csv", timeout=30
        ) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):  # no end of the chunked body
                response.read()
        time.sleep(0.5)  # the log line is written
    text = log.read_text()
    assert "Traceback" not in text and "Exception in ASGI application" not in text, text
    cut = [line for line in text.splitlines() if "/?format=csv" in line or "GET /" in line]
    assert len(cut) == 1, text
    assert "cut" in cut[0] and "QueryCanceledError" in cut[0], cut


# ------------------------------------------------------------------------- deadlocks


class Deadlocks:
    """Another BMDB client that makes webug's next statement a deadlock victim `times`
    times in a row, then lets it through.

    It locks `table` (ACCESS EXCLUSIVE, in a transaction), waits until a webug statement
    waits for it, then locks a table that statement already holds: each now waits for
    the other. webug's sessions check for deadlocks after DEADLOCK_TIMEOUT (set on the
    database) and this one after a minute, so webug's statement is the victim. The second
    lock is taken in a savepoint and given back, so the statement's retry can hold it
    again, and be the victim again.
    """

    def __init__(self, dsn: str, table: str, times: int) -> None:
        self._dsn, self._table, self._times = dsn, table, times
        self._locked = threading.Event()
        self.victims: list[str] = []  # the tables webug held when it was made a victim
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            await conn.execute("SET deadlock_timeout = '60s'")
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {self._table} IN ACCESS EXCLUSIVE MODE")
                self._locked.set()
                for _ in range(self._times):
                    held = await self._statement_waiting(conn)
                    savepoint = conn.transaction()  # rolled back: its lock is given back
                    await savepoint.start()
                    await conn.execute(f'LOCK TABLE "{held}" IN ACCESS EXCLUSIVE MODE')
                    await savepoint.rollback()
                    self.victims.append(held)
        finally:
            self._locked.set()
            await conn.close()

    async def _statement_waiting(self, conn: asyncpg.Connection) -> str:
        """A table held by the webug statement that waits for ours."""
        for _ in range(1000):
            held = await conn.fetchval(
                "SELECT c.relname FROM pg_locks w JOIN pg_stat_activity a ON a.pid = w.pid"
                " JOIN pg_locks l ON l.pid = w.pid AND l.granted"
                " JOIN pg_class c ON c.oid = l.relation AND c.relkind = 'r'"
                " AND c.relnamespace = 'public'::regnamespace"
                " WHERE w.relation = $1::regclass AND NOT w.granted"
                " AND a.application_name = 'webug' LIMIT 1",
                self._table,
            )
            if held is not None:
                return held
            await asyncio.sleep(0.01)
        raise AssertionError(f"no webug statement waited for {self._table}")

    def __enter__(self) -> Deadlocks:
        self._thread.start()
        assert self._locked.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(30)
        assert not self._thread.is_alive()


DEADLOCK_TIMEOUT = "500ms"  # webug's sessions: past the other client's reaction time


@pytest.mark.parametrize("times", [1, 2])
def test_a_deadlock_victim_runs_once_more_then_is_a_503_to_retry(migrated_db_dsn, times):
    """Once: the statement runs again and the page answers. Twice: a 503 saying to retry."""
    load_small_fleet(migrated_db_dsn)
    database = database_name(migrated_db_dsn)
    run_sync(execute(
        migrated_db_dsn, f'ALTER DATABASE "{database}" SET deadlock_timeout = {DEADLOCK_TIMEOUT!r}'
    ))  # fmt: skip
    with webug_client(migrated_db_dsn) as client:
        assert client.get(f"/machine/{mid(1)}").status_code == 200
        with Deadlocks(migrated_db_dsn, "machine_os_installation_report", times) as deadlocks:
            response = client.get(f"/machine/{mid(1)}")
        assert len(deadlocks.victims) == times
        if times == 1:
            assert response.status_code == 200 and str(mid(1)) in response.text
        else:
            assert response.status_code == 503, response.text[:500]
            assert response.headers["Retry-After"] == "1"
            assert "BMDB busy: a conflicting transaction" in response.text
            assert "DeadlockDetectedError" in response.text


# ------------------------------------------------------------- tags created since

CUSTOM_LABELS = "CREATE TABLE machine_custom_labels (machine_id uuid PRIMARY KEY, label text)"


def test_a_tag_created_under_a_running_webug_is_found_by_the_first_url_naming_it(
    migrated_db_dsn, monkeypatch
):
    """has=, lacks= and a tag value's download naming a tag reflection has not seen yet
    re-reflect once and answer; an unknown tag is then a 400 listing the tags there are,
    and a crowd of them reflects at most once per "refresh now" interval."""
    from app.bmdb import schema_cache

    reflections = []
    real_reflect = schema_cache.reflect

    async def counted(conn):
        reflections.append(time.monotonic())
        return await real_reflect(conn)

    monkeypatch.setattr(schema_cache, "reflect", counted)
    run_sync(execute(migrated_db_dsn, *DRIFT_FLEET))
    with webug_client(migrated_db_dsn) as client:
        run_sync(execute(
            migrated_db_dsn, CUSTOM_LABELS,
            f"INSERT INTO machine_custom_labels VALUES ('{mid(1)}', 'rack 7')",
        ))  # fmt: skip
        listed = client.get("/?has=CustomLabels")
        assert listed.status_code == 200 and str(mid(1)) in listed.text
        assert client.get("/?lacks=CustomLabels").status_code == 200
        # Dropped and created again (the drift retry sees the drop; this, the creation).
        run_sync(execute(migrated_db_dsn, "DROP TABLE machine_custom_labels"))
        assert client.get("/?has=CustomLabels").status_code in (400, 503)
        time.sleep(schema_cache.MIN_REFRESH_INTERVAL_S)  # past the last refresh's interval
        run_sync(execute(
            migrated_db_dsn, CUSTOM_LABELS,
            f"INSERT INTO machine_custom_labels VALUES ('{mid(1)}', 'rack 8')",
        ))  # fmt: skip
        value = client.get(f"/machine/{mid(1)}/tag/CustomLabels/label")
        assert value.status_code == 200 and value.content == b"rack 8"
        before = len(reflections)
        for _ in range(10):
            unknown = client.get("/?has=NoSuchTag")
            assert unknown.status_code == 400
            said = html.unescape(unknown.text)
            assert "no tag type 'NoSuchTag' in this BMDB; its tag types: " in said
            assert "CustomLabels" in unknown.text
        missing = client.get(f"/machine/{mid(1)}/tag/NoSuchTag/x")
        assert missing.status_code == 404 and "No tag field NoSuchTag.x" in missing.text
        assert len(reflections) - before <= 1


# -------------------------------------------------------------------- schema drift

DRIFT_SESSION = uuid.UUID(int=0xD71F)
DRIFT_FLEET = [
    f"INSERT INTO machines VALUES ('{mid(1)}', now() - interval '1 day')",
    f"""INSERT INTO machine_provided (machine_id, provider, provider_id, provider_location)
        VALUES ('{mid(1)}', 'Equinix', 'eq-drift', 'fr5')""",
    f"INSERT INTO machine_agent_started VALUES ('{mid(1)}', now(), '\\x0102')",
    f"INSERT INTO machine_agent_heartbeat VALUES ('{mid(1)}', now())",
    f"INSERT INTO machine_os_installation_request VALUES ('{mid(1)}', 1, '\\x0801')",
    f"""INSERT INTO sessions VALUES ('{DRIFT_SESSION}', 'shepherd-drift', 'pid 9',
        now() - interval '1 hour', 60, now() + interval '1 hour')""",
    f"INSERT INTO work VALUES ('{mid(1)}', '{DRIFT_SESSION}', 'ShepherdAccess')",
    f"""INSERT INTO work_history VALUES
        ('{mid(1)}', 'ShepherdAccess', 'Started', now() - interval '5 minutes', NULL)""",
]
DRIFT_ALSO = ("/overview", "/sessions", f"/machine/{mid(1)}/history", "/search?q=eq-")
DRIFT = [
    "DROP TABLE machine_agent_heartbeat",
    "ALTER TABLE machine_os_installation_request RENAME TO machine_os_install_request",
    # A result type that changes under asyncpg's prepared statement cache.
    "ALTER TABLE machine_provided ALTER COLUMN provider_location TYPE text",
    "ALTER TABLE machine_agent_started ADD COLUMN agent_version text DEFAULT 'v2'",
]


def test_schema_drift_reflects_again_and_retries_once(migrated_db_dsn):
    run_sync(execute(migrated_db_dsn, *DRIFT_FLEET))
    with webug_client(migrated_db_dsn, schema_refresh_seconds=3600) as client:
        for url in ("/", f"/machine/{mid(1)}", f"/machine/{mid(1)}/live", *DRIFT_ALSO):
            assert client.get(url).status_code == 200, url  # statements prepared and cached
        assert "AgentHeartbeat" in client.get(f"/machine/{mid(1)}").text
        overview = client.get("/overview").text  # its counts are cached, too
        assert "<h2>Agents</h2>" in overview and "<h2>OS installation</h2>" in overview
        reflected = client.get("/schema?format=json").json()["reflected_at"]

        run_sync(execute(migrated_db_dsn, *DRIFT))

        detail = client.get(f"/machine/{mid(1)}")
        assert detail.status_code == 200, detail.text[:1000]
        assert "AgentHeartbeat" not in detail.text and "OSInstallRequest" in detail.text
        assert "agent_version" in detail.text and "eq-drift" in detail.text
        schema = client.get("/schema?format=json").json()
        assert schema["reflected_at"] != reflected  # re-reflected now, not in an hour
        assert "AgentHeartbeat" not in {t["name"] for t in schema["tag_types"]}
        listing = client.get("/")
        assert listing.status_code == 200 and str(mid(1)) in listing.text
        assert "AgentHeartbeat" not in listing.text
        as_json = client.get(f"/machine/{mid(1)}?format=json")
        assert as_json.status_code == 200
        assert "OSInstallRequest" in as_json.json()["machine"]["tags"]
        # The other pages show the fleet as it is now, not an error or the old schema.
        overview = client.get("/overview")
        assert overview.status_code == 200
        assert "<h2>Agents</h2>" not in overview.text  # no heartbeat table to count
        assert "<h2>OS installation</h2>" not in overview.text  # its table was renamed
        tags = {t["label"]: t["count"] for t in client.get("/overview?format=json").json()["tags"]}
        assert tags == {
            "AgentStarted": 1,
            "HardwareReport": 0,
            "OSInstallRequest": 1,  # renamed: counted under its new name
            "OSInstallationReport": 0,
            "Provided": 1,
        }
        sessions = client.get("/sessions")
        assert sessions.status_code == 200 and f'id="s-{DRIFT_SESSION}"' in sessions.text
        assert "shepherd-drift" in sessions.text
        history = client.get(f"/machine/{mid(1)}/history")
        assert history.status_code == 200
        assert re.findall(r'<span class="event">(\w+)</span>', history.text) == ["Started"]
        assert 'class="bar running"' in history.text  # the timeline, with its work
        found = client.get("/search?q=eq-", follow_redirects=False)
        assert found.status_code == 303 and found.headers["location"] == f"/machine/{mid(1)}"
        (match,) = client.get("/search?q=eq-&format=json").json()["matches"]
        assert match["matched"] == "eq-drift" and match["label"] == "Equinix eq-drift"


def test_drift_that_reflection_cannot_fix_is_a_503_page_not_a_500(migrated_db_dsn):
    run_sync(execute(migrated_db_dsn, *DRIFT_FLEET))
    with webug_client(migrated_db_dsn, schema_refresh_seconds=3600) as client:
        assert client.get(f"/machine/{mid(1)}").status_code == 200
        # `work` is part of the BMDB's core, not a reflected tag: no schema reload helps.
        run_sync(execute(migrated_db_dsn, "ALTER TABLE work RENAME TO work_v2"))
        page = client.get(f"/machine/{mid(1)}")
        assert page.status_code == 503 and "BMDB schema does not match" in page.text
        assert "UndefinedTableError" in page.text


# ----------------------------------------------------------------------- read-only


def test_a_write_through_webugs_pool_is_refused_by_the_database(migrated_db_dsn):
    insert = "INSERT INTO machines (machine_id, machine_created_at) VALUES ($1, now())"

    async def try_to_write(app) -> list[str]:
        refused = []
        async with app.state.db.connection() as conn:
            assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
            for attempt in (
                lambda: conn.execute(insert, uuid.uuid4()),
                lambda: conn.execute("CREATE TABLE machine_evil (machine_id uuid)"),
            ):
                try:
                    await attempt()
                except asyncpg.ReadOnlySQLTransactionError as exc:
                    refused.append(type(exc).__name__)
        try:
            await Reader(app.state.db).fetch(insert, uuid.uuid4())
        except asyncpg.ReadOnlySQLTransactionError as exc:
            refused.append(type(exc).__name__)
        return refused

    with webug_client(migrated_db_dsn) as client:
        refused = client.portal.call(try_to_write, client.app)
    assert refused == ["ReadOnlySQLTransactionError"] * 3

    async def count() -> int:
        conn = await asyncpg.connect(migrated_db_dsn)
        try:
            return await conn.fetchval(
                "SELECT (SELECT count(*) FROM machines)"
                " + (SELECT count(*) FROM pg_tables WHERE tablename = 'machine_evil')"
            )
        finally:
            await conn.close()

    assert run_sync(count()) == 0


# -------------------------------------------------------------------- slow queries


def test_locked_table_times_out_pages_without_exhausting_the_pool(migrated_db_dsn):
    run_sync(execute(migrated_db_dsn, *DRIFT_FLEET))
    settings = {"statement_timeout_ms": 800, "pool_max_size": 2, "pool_wait_seconds": 1.5}
    with (
        webug_client(migrated_db_dsn, **settings) as client,
        concurrent.futures.ThreadPoolExecutor(6) as pool,
    ):
        with TableLock(migrated_db_dsn, "machines"):
            locked = [pool.submit(client.get, f"/machine/{mid(1)}") for _ in range(6)]
            wait_for_webug_lock_waits(migrated_db_dsn, 1)
            started = time.monotonic()
            health = client.get("/healthz")
            schema = client.get("/schema")
            other_ms = (time.monotonic() - started) * 1000
            still_waiting = sum(not f.done() for f in locked)
            responses = [f.result(timeout=30) for f in locked]
            print(f"\n/healthz + /schema in {other_ms:.0f} ms while {still_waiting} pages waited")
        assert health.status_code == 200 and schema.status_code == 200
        assert still_waiting >= 1  # they answered while the locked pages were still waiting
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {503, 504}, statuses
        assert 504 in statuses  # the statement timeout cut the query on the lock
        timed_out = next(r for r in responses if r.status_code == 504)
        assert "Query timed out" in timed_out.text and "statement timeout" in timed_out.text
        busy = [r for r in responses if r.status_code == 503]
        assert all("webug is busy" in r.text for r in busy)
        # Lock gone: the same page answers, the pool was not left broken.
        assert client.get(f"/machine/{mid(1)}").status_code == 200

        async def sleep_query(app) -> str:
            try:
                await Reader(app.state.db).fetch("SELECT pg_sleep(30)")
            except asyncpg.QueryCanceledError as exc:
                return str(exc)
            return "not cut"

        assert "statement timeout" in client.portal.call(sleep_query, client.app)


# --------------------------------------------------------------------------- soak


def test_short_soak_right_data_only_and_recovery_after_a_restart(running, own_bmdb):
    from bench.soak import run_soak

    log = REPO / "artifacts" / "soak-short-webug.log"
    result = run_soak(
        running, own_bmdb, duration=10.0, watchers=20, down_at=3.0, down_for=2.0, log_path=log
    )
    print("\n" + result.summary())
    assert result.wrong == 0, result.wrong_examples
    assert result.server_errors == 0, result.error_examples
    assert result.errors_outside_outage == 0, result.error_examples
    assert result.ok_before > 0 and result.ok_after > 0
    assert result.errors_after_up == 0, result.error_examples  # back at the first poll
    assert result.recovery_s is not None and result.recovery_s < 5  # poll interval: 2 s
