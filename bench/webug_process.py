"""webug as the bench sees it: a uvicorn process on a loopback port, reached over HTTP.

Nothing here imports webug: it is started as `uvicorn app.main:app` with WEBUG_*
variables, and its latency is read from its `Server-Timing: app;dur=…` header. The bare
stack (bench/bare_stack.py) is started the same way, with the same uvicorn options.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent

# How webug is served (uvicorn's defaults pick these when installed; said here so the
# bare stack cannot differ): uvloop, the httptools parser, one worker in this process.
UVICORN_OPTIONS = ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
                   "--no-access-log"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


def server_ms(response: httpx.Response) -> float:
    """webug's own latency for this response, from its Server-Timing header: from the
    request reaching the app to the response starting, no client overhead."""
    match = re.search(r"app;dur=([0-9.]+)", response.headers.get("server-timing", ""))
    if match is None:
        raise RuntimeError("no Server-Timing header: is this webug?")
    return float(match[1])


def start_uvicorn(
    app: str, port: int, env: dict[str, str], app_dir: Path = REPO
) -> subprocess.Popen:
    """uvicorn serving `app` ("module:attribute", found in `app_dir`) on 127.0.0.1:port."""
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir), "--port", str(port),
         *UVICORN_OPTIONS],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def start(dsn: str, port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """webug from this checkout on 127.0.0.1:port."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WEBUG_")}
    environment["WEBUG_DSN"] = dsn
    environment.update(env or {})
    return start_uvicorn("app.main:app", port, environment)


async def wait_healthy(base: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(base + "/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{base} did not become healthy")


@asynccontextmanager
async def serving(
    proc_for_port: Callable[[int], subprocess.Popen],
) -> AsyncIterator[tuple[str, subprocess.Popen]]:
    """The process `proc_for_port(port)` starts, healthy on a free port: (its base URL,
    the process); stopped on exit."""
    port = free_port()
    proc = proc_for_port(port)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(10)


def running(
    dsn: str, env: dict[str, str] | None = None
) -> AbstractAsyncContextManager[tuple[str, subprocess.Popen]]:
    """A healthy webug: (its base URL, its process)."""
    return serving(lambda port: start(dsn, port, env))


def bare_stack() -> AbstractAsyncContextManager[tuple[str, subprocess.Popen]]:
    """A healthy bench/bare_stack.py: (its base URL, its process)."""
    return serving(lambda port: start_uvicorn("bare_stack:app", port, dict(os.environ), BENCH))


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds used, peak RSS in KiB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(
        line
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmHWM")
    )
    return cpu, int(hwm.split()[1])
