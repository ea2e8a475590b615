"""Server subprocesses for the benchmark: start pinned to one CPU, read /proc, always kill."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
APPS = {
    "baseline": "baseline_server:app",
    "dialogue": "dialogue_server:app",
    "cluster": "cluster_server:app",  # cluster.py: the Redis broker, from BENCH_REDIS_* env vars
    "sse-plain": "sse_baseline_server:app",  # sse.py's ceiling (its dialogue is dialogue_server:app)
    "pipeline": "pipeline_server:app",  # pipeline.py, flood.py: configured by BENCH_PIPELINE
    "shape-dialogue": "shape_server:app",  # shape.py: room families; SHAPE_* env vars
    "shape-baseline": "shape_baseline_server:app",  # shape.py's plain Starlette ceiling
    "shape-socketio": "shape_socketio_server:app",  # shape.py: python-socketio
    "instances": "instances_server:app",  # instances.py: one family, a short idle_ttl
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


class CpuMeter(Protocol):
    """What the phases read of a server: a ServerProcess, or cluster.py's nodes plus Redis."""

    def cpu_seconds(self) -> float: ...


class ServerError(RuntimeError):
    """The server did not come up (its log tail is in the message)."""


class ServerProcess:
    """A running uvicorn subprocess and what /proc says about it."""

    def __init__(
        self, kind: str, proc: subprocess.Popen[bytes], port: int, log: Path, label: str | None = None
    ) -> None:
        self.kind, self.proc, self.port, self.log = kind, proc, port, log
        self.label = label or kind

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def cpu_seconds(self) -> float:
        """utime + stime of the server process, in seconds."""
        return proc_cpu_seconds(self.proc.pid)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise ServerError("no VmRSS in /proc status")

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin_and_tie(cpu: int | None) -> Callable[[], None]:
    def preexec() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        # die with the benchmark even if it is SIGKILLed
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    return preexec


def server_command(kind: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", APPS[kind],
        "--app-dir", str(BENCH_DIR),
        "--host", "127.0.0.1", "--port", str(port),
        "--ws", "websockets-sansio",
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip


async def _wait_listening(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ServerError(f"{server.label} exited ({server.proc.returncode}):\n{server.log_tail()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise ServerError(f"{server.label} not listening after {timeout}s:\n{server.log_tail()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)


def server_env(repo: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """A server's environment: ``env`` added, ``repo`` (whose ``dialogue_fastapi`` it imports)
    first on PYTHONPATH. The server runs in ``repo`` too: ``python -m`` puts the working
    directory before PYTHONPATH, and this repository's library must not shadow another's."""
    return dict(
        os.environ,
        **(env or {}),
        PYTHONPATH=os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])),
    )


def library_file(repo: Path) -> Path:
    """Where a server started for ``repo`` imports ``dialogue_fastapi`` from."""
    out = subprocess.run(
        [sys.executable, "-c", "import dialogue_fastapi; print(dialogue_fastapi.__file__)"],
        cwd=repo, env=server_env(repo), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if out.returncode != 0:
        raise ServerError(f"dialogue_fastapi does not import from {repo}:\n{out.stderr[-2000:]}")
    return Path(out.stdout.strip()).resolve()


def library_state(repo: Path = REPO_DIR) -> dict[str, str]:
    """The library the servers import from ``repo``: its commit and newest file (every server
    imports it anew)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ""
    newest = max((repo / "dialogue_fastapi").rglob("*.py"), key=lambda f: f.stat().st_mtime)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest.stat().st_mtime))
    return {"commit": head or "unknown", "newest_file": f"{newest.relative_to(repo)} ({stamp})"}


@asynccontextmanager
async def running_server(
    kind: str,
    cpu: int | None,
    startup_timeout: float = 20.0,
    env: dict[str, str] | None = None,
    label: str | None = None,
    repo: Path = REPO_DIR,
) -> AsyncIterator[ServerProcess]:
    """Start ``kind`` on a free 127.0.0.1 port pinned to ``cpu``; kill it on exit, whatever happens.

    ``env``: extra environment variables for the server; ``label``: its name in messages;
    ``repo``: the checkout whose library it imports (the server modules are this directory's).
    """
    env = server_env(repo, env)
    label = label or kind
    with tempfile.NamedTemporaryFile(prefix=f"fanout-{kind}-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
    for attempt in range(3):  # the free port can be taken between probe and bind
        port = free_port()
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                server_command(kind, port),
                cwd=repo,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_pin_and_tie(cpu),
            )
        server = ServerProcess(kind, proc, port, log_path, label)
        try:
            await _wait_listening(server, startup_timeout)
        except ServerError:
            _stop(proc)
            if attempt == 2 or "address already in use" not in server.log_tail().lower():
                raise
            continue
        except BaseException:
            _stop(proc)
            raise
        break
    try:
        yield server
    finally:
        _stop(proc)
        tail = server.log_tail(8)
        if tail.strip():  # --log-level warning: anything here deserves a look
            print(
                f"    [{label} server log, last lines]\n" + "\n".join(f"      {x}" for x in tail.splitlines())
            )
        log_path.unlink(missing_ok=True)
