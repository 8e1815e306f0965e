"""The zero-setup demo: two webugs on one machine share one embedded PostgreSQL safely,
and a demo that stops (or was killed) leaves no PostgreSQL running."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from tests.support import free_port, run_sync

REPO = Path(__file__).resolve().parents[1]

# What each webug does at start in demo mode (app.main's lifespan), then prints its DSN.
PREPARE = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from app.demo.embedded import prepare_demo
    dsn = asyncio.run(prepare_demo(Path(sys.argv[1]), 40))
    print(dsn, flush=True)
    sys.stdin.read()  # keep this process' handle on the server until told to stop
""")


async def _counts(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return (
            await conn.fetchval("SELECT count(*) FROM machines"),
            await conn.fetchval("SELECT version FROM schema_migrations"),
        )
    finally:
        await conn.close()


def test_two_demo_webugs_share_one_server_seeded_once(tmp_path):
    data_dir = tmp_path / "demo-pg"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PREPARE, str(data_dir)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        dsns = [p.stdout.readline().strip() for p in procs]
        assert dsns[0] and dsns[0] == dsns[1], dsns
        assert run_sync(_counts(dsns[0])) == (40, 1698288577)  # seeded once, fully migrated
        # The first one exits; the server stays up for the second.
        procs[0].communicate("", timeout=60)
        assert run_sync(_counts(dsns[0]))[0] == 40
    finally:
        for p in procs:
            if p.poll() is None:
                p.communicate("", timeout=60)
    # Reused by the next run, with the data kept.
    again = subprocess.Popen(
        [sys.executable, "-c", PREPARE, str(data_dir)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        dsn = again.stdout.readline().strip()
        assert run_sync(_counts(dsn))[0] == 40
    finally:
        again.communicate("", timeout=60)


# --- the demo as `make run` starts it, stopped ------------------------------------------


def postgres_of(data_dir: Path) -> list[psutil.Process]:
    """The PostgreSQL processes serving `data_dir` (its postmaster names it with -D)."""
    return [
        proc
        for proc in psutil.process_iter(["name", "cmdline"])
        if proc.info["name"] == "postgres" and str(data_dir) in " ".join(proc.info["cmdline"] or ())
    ]


@pytest.fixture
def data_dir(tmp_path) -> Iterator[Path]:
    """A demo's data directory; a server a failed test left on it is stopped at the end."""
    yield tmp_path / "demo-pg"
    for proc in postgres_of(tmp_path / "demo-pg"):
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown


def start_demo(data_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`uvicorn app.main:app` with no WEBUG_DSN (the demo), once it answers /healthz."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBUG_")}
    env.update(WEBUG_DEMO_DATA_DIR=str(data_dir), WEBUG_DEMO_MACHINES="20",
               WEBUG_DEMO_SIMULATE="false", PYTHONUNBUFFERED="1")  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)


def stopped(proc: subprocess.Popen, sig: int) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=60)


def test_the_demo_stops_its_postgresql_when_it_stops(data_dir, tmp_path):
    """SIGTERM (or Ctrl-C) of `make run`: uvicorn shuts down and re-raises the signal,
    so atexit handlers never run; the lifespan stops the server."""
    log = tmp_path / "webug.log"
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc, _ = start_demo(data_dir, log)
        assert postgres_of(data_dir)
        stopped(proc, sig)
        assert not postgres_of(data_dir), log.read_text()[-3000:]


def test_a_server_left_by_a_killed_demo_is_reused_then_stopped(data_dir, tmp_path):
    log = tmp_path / "webug.log"
    proc, _ = start_demo(data_dir, log)
    stopped(proc, signal.SIGKILL)  # no lifespan, no atexit: the server stays
    left = postgres_of(data_dir)
    assert left
    proc, base_url = start_demo(data_dir, log)
    with urllib.request.urlopen(base_url + "/?format=json") as page:
        assert json.load(page)["total"] == 20  # the same data, served by the same server
    assert {p.pid for p in postgres_of(data_dir)} >= {p.pid for p in left}
    stopped(proc, signal.SIGTERM)
    assert not postgres_of(data_dir), log.read_text()[-3000:]
