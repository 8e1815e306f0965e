"""One collector per host: the uvicorn workers of a host (and any other webug process there
on the same BMDB and workflows) take turns at a file lock; the one holding it collects and
writes what it collected to a file beside it, the others answer scrapes from that file.

The lock is `flock` on `<dir>/webug-fleet-stats-<key>.lock`, taken without waiting: a
process that does not get it tries again at its next interval, so when the holder exits
(the kernel drops its lock) another takes over within one interval. The snapshot is
written to a temporary file and renamed over `<key>.json`, so a reader sees a whole one.
`<dir>` is PROMETHEUS_MULTIPROC_DIR when set (the directory the workers share for
metrics), else the system's temporary directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def share_directory() -> Path:
    return Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.gettempdir())


def share_key(*parts: str) -> str:
    """A file-name-safe digest of what makes two processes' statistics the same (the BMDB's
    DSN, which may hold a password, and the workflows)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class HostShare:
    def __init__(self, directory: Path, key: str) -> None:
        self.lock_path = directory / f"webug-fleet-stats-{key}.lock"
        self.snapshot_path = directory / f"webug-fleet-stats-{key}.json"
        self._fd: int | None = None
        self._read: tuple[tuple[int, int, int], Any] | None = None  # (file identity, value)

    @property
    def holding(self) -> bool:
        return self._fd is not None

    def try_hold(self) -> bool:
        """True when this process holds the lock (now, or already)."""
        if self._fd is not None:
            return True
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # A holder that stopped removed the file: a lock on that one guards nothing.
            if os.fstat(fd).st_ino != os.stat(self.lock_path).st_ino:
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            return False
        self._fd = fd
        return True

    def publish(self, snapshot: dict[str, Any]) -> None:
        temporary = self.snapshot_path.with_name(f"{self.snapshot_path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(snapshot))
        os.replace(temporary, self.snapshot_path)

    def read(self) -> dict[str, Any] | None:
        """The holder's last snapshot (parsed once per version of the file), or None."""
        try:
            st = os.stat(self.snapshot_path)
            identity = (st.st_ino, st.st_mtime_ns, st.st_size)
            if self._read is None or self._read[0] != identity:
                self._read = identity, json.loads(self.snapshot_path.read_text())
        except (OSError, ValueError):  # none yet, or the holder removed it as it stopped
            return None
        return self._read[1]

    def release(self) -> None:
        """Stop collecting: the files go (the next holder writes new ones), then the lock."""
        if self._fd is None:
            return
        for path in (self.snapshot_path, self.lock_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        os.close(self._fd)
        self._fd = None
