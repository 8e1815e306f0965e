"""webug as the bench sees it: a uvicorn process on a loopback port, reached over HTTP.

Nothing here imports webug: it is started as `uvicorn app.main:app` with WEBUG_*
variables, and its latency is read from its `Server-Timing: app;dur=…` header.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

REPO = Path(__file__).resolve().parents[1]


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


def start(dsn: str, port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """uvicorn, one worker, serving webug from this checkout on 127.0.0.1:port."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WEBUG_")}
    environment["WEBUG_DSN"] = dsn
    environment.update(env or {})
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO,
        env=environment,
        stdin=subprocess.DEVNULL,
    )


async def wait_healthy(base: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(base + "/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("webug did not become healthy")


@asynccontextmanager
async def running(
    dsn: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, subprocess.Popen]]:
    """A healthy webug on a free port: (its base URL, its process); stopped on exit."""
    port = free_port()
    proc = start(dsn, port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(10)


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
