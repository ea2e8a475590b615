"""Real server processes for the cluster tests.

``NodeProcess`` runs ``python -m uvicorn cluster_app:app`` (or gunicorn with
uvicorn workers) as a subprocess in its own process group, on a free port of
127.0.0.1, with its output in a file. ``start()`` returns once
``GET /dialogue/ready`` answers 200; ``stop()`` sends SIGTERM (SIGKILL after a
bound), ``kill()`` sends SIGKILL to the whole group, ``restart()`` starts it
again on the same port. Failures quote the tail of the node's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from dialogue_fastapi.testing import WsProbe

HERE = Path(__file__).resolve().parent
ROUTER_PREFIX = "/dialogue"  # cluster_app mounts the Dialogue router here
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def node_env(redis_url: str, prefix: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a node: this one without ``DIALOGUE_*`` overrides, plus the cluster's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALOGUE_")}
    env.update({
        "DIALOGUE_TEST_REDIS_URL": redis_url,
        "CLUSTER_PREFIX": prefix,
        "CLUSTER_PARENT_PID": str(os.getpid()),
        "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


class NodeFailed(AssertionError):
    """A node did not start, or ended when it should not have; the message quotes its output."""


class NodeProcess:
    """One server process (with its workers, if any) of the cluster under test."""

    def __init__(
        self, name: str, env: dict[str, str], log_dir: Path, *, port: int | None = None,
        server: str = "uvicorn", workers: int = 1, app: str = "cluster_app:app",
        extra_args: Sequence[str] = (),
    ) -> None:
        if server not in ("uvicorn", "gunicorn"):
            raise ValueError(f"unknown server {server!r}")
        self.name, self.env, self.server, self.workers, self.app = name, env, server, workers, app
        self.port = port or free_port()
        self.log_path = log_dir / f"{name}.log"
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exit_codes: list[int] = []  # of every run that ended, in order

    # addresses -------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.http_url + ROUTER_PREFIX

    def ws_url(self, user: str | None = None) -> str:
        url = f"ws://{HOST}:{self.port}{ROUTER_PREFIX}/ws"
        return url if user is None else f"{url}?token={user}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and not self._leader_done()

    def _state(self) -> str:
        proc = self.proc
        if proc is None:
            return "not started"
        if proc.returncode is not None:
            return f"exit code {proc.returncode}"
        with contextlib.suppress(ChildProcessError):
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None:
                ended = "exit code" if info.si_code == os.CLD_EXITED else "killed by signal"
                return f"{ended} {info.si_status}"
        return f"pid {proc.pid} running"

    def _leader_done(self) -> bool:
        """Whether the node's own process ended, without reaping it: while it is a zombie its
        pid stays reserved, so signalling its process group cannot hit anyone else's."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def __repr__(self) -> str:
        return f"NodeProcess({self.name!r}, port={self.port}, pid={self.pid})"

    # output ------------------------------------------------------------------------
    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output file)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def failure(self, what: str) -> NodeFailed:
        return NodeFailed(f"node {self.name} (port {self.port}, {self._state()}): {what}\n"
                          f"--- last lines of {self.log_path} ---\n{self.tail()}")

    # lifecycle -------------------------------------------------------------------------
    def command(self) -> list[str]:
        if self.server == "gunicorn":
            return [sys.executable, "-m", "gunicorn", self.app, "--bind", f"{HOST}:{self.port}",
                    "--workers", str(self.workers), "--worker-class", "uvicorn_worker.UvicornWorker",
                    "--chdir", str(HERE), "--graceful-timeout", "5", "--timeout", "30",
                    "--log-level", "warning", *self.extra_args]
        return [sys.executable, "-m", "uvicorn", self.app, "--host", HOST, "--port", str(self.port),
                "--app-dir", str(HERE), "--workers", str(self.workers), "--log-level", "warning",
                "--no-access-log", "--ws-per-message-deflate", "false",
                "--timeout-graceful-shutdown", "5", *self.extra_args]

    def spawn(self) -> None:
        """Start the process and return at once (see :meth:`wait_ready`)."""
        if self.proc is not None:
            raise RuntimeError(f"{self} was started already: stop() or kill() it first")
        self.starts += 1
        with self.log_path.open("ab") as out:
            out.write(f"=== start {self.starts}: {' '.join(self.command())}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.command(), cwd=HERE, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,  # its own process group
            )

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Until ``GET /dialogue/ready`` answers 200; fails with the node's output otherwise."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if not self.running:
                    raise self.failure("the process ended while starting")
                try:
                    response = await client.get(self.api_url + "/ready")
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if time.monotonic() > deadline:
                    raise self.failure(f"not ready after {timeout}s (last answer: {last})")
                await asyncio.sleep(0.05)

    async def start(self, timeout: float = 20.0) -> None:
        self.spawn()
        try:
            await self.wait_ready(timeout)
        except BaseException:
            await self.kill()
            raise

    async def wait_exit(self, timeout: float) -> bool:
        """True once the node's process ended (not reaped yet), False if it runs after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._leader_done():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (graceful shutdown); SIGKILL to the group if it is not gone in ``timeout``.

        Returns the exit code (None if it was not running)."""
        proc = self.proc
        if proc is None:
            return None
        if not self._leader_done():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            await self.wait_exit(timeout)
        return await self.kill()

    def pause(self) -> None:
        """SIGSTOP to the node's process group: alive but silent (a frozen VM, a long stall)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)

    async def kill(self) -> int | None:
        """SIGKILL to the node and every process of its group (nothing runs its cleanup).

        Also ends workers an ended supervisor left behind. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:  # not reaped: the group id is still the node's
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if not await self.wait_exit(10.0):
            raise self.failure("still running 10s after SIGKILL")
        proc.wait()  # reap: no zombie, no ResourceWarning
        self.proc = None
        self.exit_codes.append(proc.returncode)
        return proc.returncode

    async def restart(self, timeout: float = 20.0, *, kill: bool = False) -> None:
        """Stop (or kill) and start again on the same port."""
        await (self.kill() if kill else self.stop())
        await self.start(timeout)


async def start_all(nodes: Sequence[NodeProcess], timeout: float = 20.0) -> None:
    """Start nodes concurrently; if one fails, every one is killed and the failure raised."""
    try:
        for node in nodes:
            node.spawn()
        results = await asyncio.gather(*(n.wait_ready(timeout) for n in nodes),
                                       return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
    except BaseException:
        await stop_all(nodes, kill=True)
        raise


async def stop_all(nodes: Sequence[NodeProcess], *, kill: bool = False) -> None:
    await asyncio.gather(*((n.kill() if kill else n.stop()) for n in nodes), return_exceptions=True)


@contextlib.asynccontextmanager
async def fresh_nodes(
    names: str, redis_url: str, log_dir: Path, extra: dict[str, str] | None = None,
    prefix: str = "dnodes",
) -> AsyncIterator[list[NodeProcess]]:
    """Nodes (one per letter of ``names``) on a key prefix of their own, started together;
    stopped and their keys deleted afterwards."""
    from redis_helpers import delete_prefix

    key_prefix = f"{prefix}{secrets.token_hex(4)}:"
    nodes = [NodeProcess(f"node{name}", node_env(redis_url, key_prefix, extra), log_dir)
             for name in names]
    try:
        await start_all(nodes)
        yield nodes
    finally:
        await stop_all(nodes)
        await delete_prefix(key_prefix)


async def get_json(client: httpx.AsyncClient, url: str, **kwargs: Any) -> Any:
    response = await client.get(url, **kwargs)
    response.raise_for_status()
    return response.json()


T = TypeVar("T")


async def eventually(
    fetch: Callable[[], Awaitable[T]], ok: Callable[[T], bool], *, timeout: float = 10.0,
    step: float = 0.05, what: str = "the condition",
) -> T:
    """Poll ``fetch()`` until ``ok(value)``; fail with the last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout}s; last value: {value!r}")
        await asyncio.sleep(step)


class Cluster:
    """The nodes of one test module (sharing one key prefix) and, per test, clients of them."""

    def __init__(self, prefix: str, redis_url: str, nodes: Sequence[NodeProcess]) -> None:
        self.prefix, self.redis_url, self.nodes = prefix, redis_url, list(nodes)
        self._probes: list[WsProbe] = []
        self._http: httpx.AsyncClient | None = None

    def __getitem__(self, index: int) -> NodeProcess:
        return self.nodes[index]

    def check_running(self) -> None:
        for node in self.nodes:
            if not node.running:
                raise node.failure("the node is not running")

    # clients, closed by :meth:`close_clients` after each test ---------------------------
    async def probe(self, node: NodeProcess, user: str, **kwargs: Any) -> WsProbe:
        """A WebSocket client of ``node`` as ``user`` (hello read)."""
        p = await WsProbe.open(node.ws_url(user), **kwargs)
        self._probes.append(p)
        return p

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0)
        return self._http

    async def close_clients(self) -> None:
        probes, self._probes = self._probes, []
        for p in probes:
            with contextlib.suppress(Exception):
                await p.close()
        client, self._http = self._http, None
        if client is not None:
            await client.aclose()

    # the node's routes ---------------------------------------------------------------------
    async def node_info(self, node: NodeProcess) -> dict[str, Any]:
        info: dict[str, Any] = await get_json(self.http, node.http_url + "/test/node")
        return info

    async def presence(self, node: NodeProcess, room: str, user: str = "observer") -> dict[str, Any]:
        """``GET /rooms/{room}/presence`` on ``node``."""
        found: dict[str, Any] = await get_json(self.http, f"{node.api_url}/rooms/{room}/presence",
                                               headers=bearer(user))
        return found

    async def ready(self, node: NodeProcess) -> int:
        try:
            response = await self.http.get(node.api_url + "/ready", timeout=3.0)
        except httpx.HTTPError:
            return 0
        return response.status_code

    def key(self, name: str) -> str:
        """A key the cluster app writes for the tests (see cluster_app)."""
        return f"{self.prefix}test:{name}"


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user}"}
