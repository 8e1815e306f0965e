"""/metrics that add up over uvicorn workers, with no setup.

`uvicorn app.main:app --workers N` (N > 1) starts N worker processes from a supervisor,
with multiprocessing's spawn; they share one listening socket, so each scrape of
/metrics reaches one of them. prometheus_client adds up processes that write their
metrics to files in one directory, PROMETHEUS_MULTIPROC_DIR, read when it is imported.

uvicorn tells a worker nothing about the others, but a worker it spawned has the
supervisor as its multiprocessing parent, and every worker of one supervisor shares
that parent. So when PROMETHEUS_MULTIPROC_DIR is unset, each such worker sets it, before
anything imports prometheus_client (app/__init__.py calls `share_metrics_dir`), to the
same directory: `webug-metrics-<supervisor PID>-<its start time>` in the temp directory,
created private (0700) by the first worker and refused if anyone else owns it. A single
process (no `--workers`, or 1) keeps its metrics in memory, as before. Directories of
supervisors that are gone are removed by the next one.

Gauges of a process (its pool's connections) are written to its file by each worker
(`multiprocess_mode="livesum"`: the sum over live workers); `forget_dead_workers` drops
the files of workers that died without saying so, so a killed worker's connections stop
counting. Counters and histograms of dead workers stay, so sums never go back.

Something the same for every worker (the fleet gauges, read from the BMDB) is collected
by one process per host, which shares it through this directory too
(app/fleet/host_share.py).
"""

from __future__ import annotations

import contextlib
import glob
import multiprocessing
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "webug-metrics-"
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def _process_key(pid: int) -> str | None:
    """`<pid>-<start time>` of a running process (a PID is reused; with its start time it
    is not), `<pid>` without /proc, None when no such process runs."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return f"{pid}-{fields[19]}"  # field 22 of stat: start time, in clock ticks
    except FileNotFoundError:
        if not Path("/proc/self/stat").exists():
            return str(pid) if _alive(pid) else None
        return None
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _uvicorn_worker() -> bool:
    """Whether this process was spawned by a uvicorn supervisor (`--workers N`, N > 1;
    `--reload` spawns its one server the same way, which does no harm)."""
    return "uvicorn" in sys.modules and multiprocessing.parent_process() is not None


def _private_dir(path: Path) -> Path:
    """`path` as a directory only this user can enter, made if missing."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or info.st_mode & 0o077
    ):
        raise RuntimeError(
            f"webug: {path} is not a private directory of this user: refusing to keep"
            f" metrics in it (set {ENV} to a directory of your own)"
        )
    return path


def _remove_stale(tmp: Path, ours: Path) -> None:
    """Directories of supervisors that no longer run (owned by this user)."""
    for path in tmp.glob(PREFIX + "*"):
        key = path.name.removeprefix(PREFIX)
        pid = key.partition("-")[0]
        if path == ours or not pid.isdigit() or _process_key(int(pid)) == key:
            continue
        with contextlib.suppress(OSError):
            if path.lstat().st_uid == os.getuid() and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)


def share_metrics_dir() -> str | None:
    """Set PROMETHEUS_MULTIPROC_DIR for the workers of one uvicorn supervisor, when it is
    unset; the directory in use, or None when this process keeps its metrics alone."""
    if os.environ.get(ENV):
        return os.environ[ENV]
    if not _uvicorn_worker():
        return None
    key = _process_key(os.getppid())
    if key is None:
        return None  # the supervisor is gone already: this worker is about to end too
    tmp = Path(tempfile.gettempdir())
    path = _private_dir(tmp / f"{PREFIX}{key}")
    _remove_stale(tmp, path)
    os.environ[ENV] = str(path)
    return str(path)


def metrics_dir() -> str | None:
    """The directory the processes of this webug share their metrics in, if any."""
    return os.environ.get(ENV) or None


def forget_dead_workers() -> None:
    """Drop the live gauges of workers that ended without saying so (killed, crashed)."""
    path = metrics_dir()
    if path is None:
        return
    from prometheus_client import multiprocess

    dead = set()
    for file in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _LIVE_GAUGE_FILE.fullmatch(os.path.basename(file))
        if match and not _alive(int(match[1])):
            dead.add(int(match[1]))
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)


def leaving() -> None:
    """This worker ends: its live gauges stop counting."""
    path = metrics_dir()
    if path is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), path)
