"""One process per embedded database file: an exclusive OS lock on ``<dbfile>.lock``.

With the memory broker every process numbers its rooms on its own, so two
processes on one SQLite file would hand out the same seqs, and a second one
that starts (and then, say, cannot bind its port) would already have marked
the rooms as uncleanly stopped and given them new epochs. The store takes
this lock first, before any migration or epoch change, holds it for its life
and releases it on stop; the OS releases it when the process dies, so a
crash never leaves a stale lock. A lock that is taken fails at once
(non-blocking) with :class:`DatabaseInUse`. ``fcntl.flock`` only: on a
system without it (Windows) there is no lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sqlalchemy.engine import make_url

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


class DatabaseInUse(RuntimeError):
    """Another process holds the database file's single-writer lock."""


def lock_path(url: str) -> Path | None:
    """``<dbfile>.lock`` for a SQLite file URL; None for ``:memory:`` and other databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.database.startswith("file:") or parsed.query.get("mode") == "memory":
        return None  # URI filenames: shared in-memory databases and the like
    return Path(parsed.database).resolve().with_name(Path(parsed.database).name + ".lock")


class FileLock:
    """A held ``flock`` on one file; :meth:`acquire` fails at once if another process holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None or self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            who = "this process" if holder == str(os.getpid()) else f"another process (pid {holder})"
            raise DatabaseInUse(
                f"the database {self.path.with_suffix('')} is in use by {who}: with "
                "the memory broker only one process may use a SQLite file. Stop the other "
                "process, or share a broker between processes (broker='redis://...')"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None or fcntl is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None
