"""prometheus-client's multiprocess mode: one directory shared by a host's workers.

Set ``PROMETHEUS_MULTIPROC_DIR`` in the server's environment (uvicorn
``--workers N``, gunicorn ``-w N``): every worker writes its figures to files
there, and whichever worker serves ``/metrics`` adds them up.

Who wipes the directory: the first worker of a start. Each worker, when its
exporter is built, takes a lock on the directory and looks at the pids that
own files there (from the file names and a ``dialogue_worker_<pid>.pid``
marker each worker leaves). If none of them is a live process, the files are
from an earlier run and are removed; otherwise a sibling is running (a
worker restarted by its master, or the second worker of this start) and the
files stay, so counters of a crashed worker are kept and totals never go
back. No master hook is needed, so it works the same under uvicorn and
gunicorn, with or without ``--preload``.

Dead workers: before each scrape, the gauge files of pids that are no longer
alive (a zombie counts as dead) are removed with ``mark_process_dead``, so
the live gauges of a worker killed with SIGKILL disappear at the next scrape.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import multiprocess, values

MARKER = "dialogue_worker_{pid}.pid"
LOCK = ".dialogue_metrics.lock"
#: (pid, directory) already claimed: a second exporter in the same worker must not wipe the first's
_claimed: set[tuple[int, Path]] = set()


def directory() -> Path | None:
    """The multiprocess directory, None in single-process mode; checks prometheus-client agrees."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return None
    if values.ValueClass is values.MutexValue:
        raise RuntimeError("PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported; "
                           "set it in the server's environment before it starts")
    found = Path(path)
    found.mkdir(parents=True, exist_ok=True)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, killed but not yet reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        stat = ""
    if stat:
        return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owners(path: Path) -> Iterator[tuple[int, Path]]:
    """(pid, file) for every worker file and marker in the directory."""
    for file in path.iterdir():
        stem = file.name.removesuffix(".db").removesuffix(".pid")
        pid = stem.rpartition("_")[2]
        if pid.isdigit() and file.name != LOCK:
            yield int(pid), file


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with (path / LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def claim(path: Path) -> bool:
    """Join the directory as this worker; wipe it first if no owner is alive. True if wiped."""
    me = os.getpid()
    if (me, path) in _claimed:
        return False
    _claimed.add((me, path))
    with _locked(path):
        owners = list(_owners(path))
        wipe = not any(pid != me and alive(pid) for pid, _ in owners)
        if wipe:
            for _, file in owners:
                file.unlink(missing_ok=True)
        (path / MARKER.format(pid=me)).touch()
    return wipe


def bury_dead(path: Path) -> None:
    """Drop the live gauges (and the marker) of every worker that is no longer running."""
    dead = {pid for pid, _ in _owners(path) if pid != os.getpid() and not alive(pid)}
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
        (path / MARKER.format(pid=pid)).unlink(missing_ok=True)
