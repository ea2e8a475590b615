"""A real local Redis Cluster for the tests and for CI: three masters with one replica each.

Every node is a ``redis-server`` on 127.0.0.1 (its cluster bus on port + 10000) in a
directory of its own under ``base_dir`` (``base_dir/<port>``: nodes.conf, redis.log,
redis.pid); ``redis-cli --cluster create ... --cluster-replicas 1`` joins them. The
module needs only the standard library (it talks RESP itself), so CI runs it with the
system ``python3`` before the venv exists::

    python3 tests/redis_cluster.py start --dir /tmp/dialogue-redis-cluster --base-port 7100
    python3 tests/redis_cluster.py stop --dir /tmp/dialogue-redis-cluster

``start`` prints the ``redis+cluster://`` URL (the first three ports are the seed nodes)
and leaves the servers running (daemonized, pid files in their directories); it only
prints the URL when a healthy cluster already answers on those ports. The tests import
``LocalRedisCluster`` (see ``tests/cluster_redis/conftest.py``): every helper that
changes the cluster waits, polling and within a bound, until every live node agrees.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

HOST = "127.0.0.1"
SLOTS = 16384
BUS_OFFSET = 10000  # redis-server's default cluster bus port: port + 10000

# cluster-node-timeout 1500: a master that stops answering is PFAIL after 1.5 s and FAIL as
# soon as the other master agrees; its replica then waits 500-1000 ms and is elected: a
# failover takes 2-4 s. Lower timeouts make a loaded 2-core machine fail over nodes that
# are merely slow. cluster-replica-validity-factor 0: the replica always tries to fail
# over, however long its link to the master has been down; with the default (10) a
# replica whose link was down for a while (just restarted, still syncing, a previous
# kill) may refuse and leave its slots uncovered. repl-diskless-sync-delay 0: a replica
# gets its full sync at once instead of after the default 5 s, both at creation and when
# a killed node rejoins.
NODE_OPTIONS = [
    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
    "--cluster-node-timeout", "1500", "--cluster-replica-validity-factor", "0",
    "--cluster-allow-reads-when-down", "no",
    "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0",
    "--bind", HOST, "--loglevel", "notice", "--logfile", "redis.log",
]  # fmt: skip


class RespError(Exception):
    """An error reply (``-MOVED ...``, ``-ERR ...``)."""


class Master(NamedTuple):
    host: str
    port: int
    node_id: str
    slots: list[tuple[int, int]]  # inclusive ranges


class Node(NamedTuple):
    """One line of CLUSTER NODES."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: list[tuple[int, int]]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})


# -- a minimal RESP2 client (the CLI runs without redis-py) -------------------------------


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, timeout: float = 2.0) -> Connection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def pipeline(
        self, commands: Sequence[Sequence[str | bytes | int]], timeout: float = 10.0
    ) -> list[Any]:
        """Send the commands, then read one reply each (an error reply becomes a RespError)."""
        for args in commands:
            parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
            self.writer.write(b"*%d\r\n" % len(parts))
            for part in parts:
                self.writer.write(b"$%d\r\n%s\r\n" % (len(part), part))
        await self.writer.drain()
        async with asyncio.timeout(timeout):
            return [await self._read() for _ in commands]

    async def call(self, *args: str | bytes | int, timeout: float = 10.0) -> Any:
        (reply,) = await self.pipeline([args], timeout)
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def _read(self) -> Any:
        line = await self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by the server")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if int(rest) < 0 else (await self.reader.readexactly(int(rest) + 2))[:-2]
        if kind == b"*":
            return None if int(rest) < 0 else [await self._read() for _ in range(int(rest))]
        raise ConnectionError(f"unexpected reply {line!r}")


async def call(port: int, *args: str | bytes | int, timeout: float = 10.0) -> Any:
    """One command on a fresh connection to 127.0.0.1:port."""
    conn = await Connection.open(port)
    try:
        return await conn.call(*args, timeout=timeout)
    finally:
        await conn.close()


async def text(port: int, *args: str | bytes | int) -> str:
    reply = await call(port, *args)
    return reply.decode() if isinstance(reply, bytes) else str(reply)


async def info_fields(port: int, *args: str) -> dict[str, str]:
    """``CLUSTER INFO`` / ``INFO replication`` as a dict."""
    lines = (await text(port, *args)).splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


async def cluster_nodes(port: int) -> list[Node]:
    """CLUSTER NODES as seen by the node on ``port``."""
    nodes = []
    for line in (await text(port, "CLUSTER", "NODES")).splitlines():
        node_id, address, flags, master = line.split(" ")[:4]
        slots = []
        for part in line.split(" ")[8:]:
            if part.startswith("["):  # [slot->-id] / [slot-<-id]: a migration in progress
                continue
            first, _, last = part.partition("-")
            slots.append((int(first), int(last or first)))
        node_port = int(address.split(",")[0].split("@")[0].rsplit(":", 1)[1])
        nodes.append(Node(node_id, node_port, frozenset(flags.split(",")),
                          None if master == "-" else master, slots))
    return nodes


async def wait_for(check: Callable[[], Awaitable[str | None]], timeout: float, what: str) -> None:
    """Poll ``check`` (None: done; else why not) until done; TimeoutError with the last reason."""
    deadline = time.monotonic() + timeout
    problem: str | None = "not checked"
    while time.monotonic() < deadline:
        try:
            problem = await check()
        except (OSError, RespError, TimeoutError, EOFError, asyncio.IncompleteReadError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{what}: not done after {timeout:.0f} s ({problem})")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_cluster_ports(count: int = 6) -> list[int]:
    """``count`` consecutive free ports whose bus ports (+10000) are free too.

    Picked below the ephemeral range (32768+) so that a bus port is never above 65535.
    """
    for _ in range(200):
        base = random.randrange(20000, 22768 - count)
        ports = list(range(base, base + count))
        if all(port_free(p) and port_free(p + BUS_OFFSET) for p in ports):
            return ports
    raise RuntimeError("no free ports for a Redis Cluster")


class LocalRedisCluster:
    """Six ``redis-server`` processes forming a cluster (3 masters + 3 replicas)."""

    def __init__(self, base_dir: Path, ports: Sequence[int], *, daemonize: bool = False) -> None:
        self.base_dir = Path(base_dir)
        self.ports = list(ports)
        self.daemonize = daemonize
        self.killed: set[int] = set()
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    @classmethod
    def attach(cls, base_dir: Path) -> LocalRedisCluster:
        """The cluster that ``start --dir base_dir`` (the CLI) left running."""
        ports = sorted(int(d.name) for d in Path(base_dir).iterdir() if d.is_dir() and d.name.isdigit())
        return cls(base_dir, ports, daemonize=True)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in self.ports[:3])

    @property
    def live_ports(self) -> list[int]:
        return [p for p in self.ports if p not in self.killed]

    def node_dir(self, port: int) -> Path:
        return self.base_dir / str(port)

    # -- processes ---------------------------------------------------------------------

    def _spawn(self, port: int) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        node_dir = self.node_dir(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        args = [binary, *NODE_OPTIONS, "--port", str(port), "--dir", str(node_dir)]
        if self.daemonize:
            args += ["--daemonize", "yes", "--pidfile", str(node_dir / "redis.pid")]
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        else:
            args += ["--daemonize", "no"]
            self._procs[port] = subprocess.Popen(args, cwd=node_dir, stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.DEVNULL, start_new_session=True)
        self.killed.discard(port)

    def _daemon_pid(self, port: int) -> int | None:
        """The pid in the node's pid file, if that process is still that redis-server."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.node_dir(port) / "redis.pid").read_text())
            title = Path(f"/proc/{pid}/cmdline").read_bytes()  # "redis-server 127.0.0.1:7100 [cluster]"
            if b"redis-server" in title and f":{port}".encode() in title:
                return pid
        return None

    async def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` and wait until it is gone (nothing else: see kill_master)."""
        self.killed.add(port)
        proc = self._procs.pop(port, None)
        if proc is not None:
            proc.kill()
            proc.wait()
        elif (pid := self._daemon_pid(port)) is not None:
            os.kill(pid, signal.SIGKILL)
            await wait_for(self._gone(port), 10, f"node {port} to exit")

    def _gone(self, port: int) -> Callable[[], Awaitable[str | None]]:
        async def check() -> str | None:
            return None if port_free(port) else "still listening"
        return check

    def _check_alive(self) -> None:
        for port, proc in self._procs.items():
            if proc.poll() is not None:
                log = self.node_dir(port) / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server on port {port} exited ({proc.returncode}):\n{tail}")

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, timeout: float = 60, replicas: int = 1) -> None:
        """Start the nodes, create the cluster (3 masters, ``replicas`` each) and wait until
        it is healthy."""
        if len(self.ports) != 3 * (1 + replicas):
            raise ValueError(f"3 masters with {replicas} replica(s) each need {3 * (1 + replicas)} "
                             f"ports, not {len(self.ports)}")
        for port in self.ports:
            self._spawn(port)
        for port in self.ports:
            await wait_for(self._answers(port), 10, f"redis-server on {port}")
        proc = await asyncio.create_subprocess_exec(
            "redis-cli", "--cluster", "create", *(f"{HOST}:{p}" for p in self.ports),
            "--cluster-replicas", str(replicas), "--cluster-yes",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        if proc.returncode != 0 or b"[OK] All 16384 slots covered" not in out:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{out.decode(errors='replace')}")
        await self.wait_healthy(timeout)

    def _answers(self, port: int) -> Callable[[], Awaitable[str | None]]:
        async def check() -> str | None:
            self._check_alive()
            return None if await call(port, "PING") == "PONG" else "no PONG"
        return check

    async def stop(self) -> None:
        """Kill every node and remove the node directories (and base_dir when left empty)."""
        for port in self.live_ports:
            await self.kill(port)
        for port in self.ports:
            shutil.rmtree(self.node_dir(port), ignore_errors=True)
        with contextlib.suppress(OSError):
            self.base_dir.rmdir()

    async def problem(self) -> str | None:
        """Why the cluster is not healthy (None: it is).

        Healthy: every live node says cluster_state:ok with all 16384 slots ok, sees three
        masters serving slots and every other live node as a replica of one of them (none
        failing), and every live replica has master_link_status:up.
        """
        self._check_alive()
        live = self.live_ports
        for port in live:
            info = await info_fields(port, "CLUSTER", "INFO")
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                state, slots_ok = info.get("cluster_state"), info.get("cluster_slots_ok")
                return f"node {port}: cluster_state {state}, slots ok {slots_ok}"
            view = await cluster_nodes(port)
            serving = {n.node_id for n in view if n.is_master and n.slots and not n.failing}
            if len(serving) != 3:
                return f"node {port} sees {len(serving)} masters serving slots"
            for node in view:
                if node.port not in live:
                    continue
                if node.failing:
                    return f"node {port} sees {node.port} as {','.join(sorted(node.flags))}"
                if node.node_id not in serving and node.master_id not in serving:
                    return f"node {port} sees {node.port} as neither a master with slots nor a replica"
            replication = await info_fields(port, "INFO", "replication")
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return f"replica {port}: master_link_status {replication.get('master_link_status')}"
        return None

    async def wait_healthy(self, timeout: float = 30) -> None:
        await wait_for(self.problem, timeout, "the Redis Cluster to be healthy")

    # -- topology ----------------------------------------------------------------------

    async def nodes(self) -> list[Node]:
        """CLUSTER NODES from the first live node."""
        return await cluster_nodes(self.live_ports[0])

    async def masters(self) -> list[Master]:
        """The masters serving slots (not failed), by first slot."""
        masters = [Master(HOST, n.port, n.node_id, n.slots) for n in await self.nodes()
                   if n.is_master and not n.failing and n.slots]
        return sorted(masters, key=lambda m: m.slots[0])

    async def replica_of(self, master: int | Master) -> int:
        """The port of the (live) replica of the master on that port."""
        port = master.port if isinstance(master, Master) else master
        nodes = await self.nodes()
        master_id = next(n.node_id for n in nodes if n.port == port)
        for node in nodes:
            if node.master_id == master_id and not node.failing:
                return node.port
        raise LookupError(f"master {port} has no live replica")

    async def slot_of(self, key: str | bytes) -> int:
        slot: int = await call(self.live_ports[0], "CLUSTER", "KEYSLOT", key)
        return slot

    async def owner_of(self, slot: int) -> int:
        """The port of the master serving ``slot``."""
        for node in await self.nodes():
            if node.is_master and any(a <= slot <= b for a, b in node.slots):
                return node.port
        raise LookupError(f"slot {slot} is not served")

    # -- failover and migration --------------------------------------------------------

    async def kill_master(self, port: int, timeout: float = 30) -> int:
        """SIGKILL the master on ``port``; wait until its replica took over; return the replica's port.

        Done when every surviving node shows the replica as a master with the killed master's
        slots and says cluster_state:ok.
        """
        nodes = await self.nodes()
        master = next(n for n in nodes if n.port == port)
        if not master.is_master:
            raise ValueError(f"node {port} is not a master")
        replica_port = await self.replica_of(port)
        replica_id = next(n.node_id for n in nodes if n.port == replica_port)
        await self.kill(port)

        async def promoted() -> str | None:
            for live in self.live_ports:
                view = {n.node_id: n for n in await cluster_nodes(live)}
                if not view[replica_id].is_master or view[replica_id].slots != master.slots:
                    return f"node {live} does not see {replica_port} as the master of the slots yet"
                info = await info_fields(live, "CLUSTER", "INFO")
                if info.get("cluster_state") != "ok":
                    return f"node {live}: cluster_state {info.get('cluster_state')}"
            return None

        await wait_for(promoted, timeout, f"replica {replica_port} to replace master {port}")
        return replica_port

    async def wait_replicated(self, port: int, timeout: float = 10) -> None:
        """Wait until the replica of the master on ``port`` has every write the master has."""
        replica = await self.replica_of(port)

        async def caught_up() -> str | None:
            master_at = int((await info_fields(port, "INFO", "replication"))["master_repl_offset"])
            replica_at = int((await info_fields(replica, "INFO", "replication"))["slave_repl_offset"])
            return None if replica_at >= master_at else f"replica at {replica_at} of {master_at}"

        await wait_for(caught_up, timeout, f"replica {replica} to catch up with {port}")

    async def kill_master_losing_writes(self, port: int, write: Callable[[], Awaitable[None]],
                                       timeout: float = 30) -> int:
        """A failover that loses acknowledged writes, for real; returns the new master's port.

        The replica is frozen (SIGSTOP) and the master drops its replication link
        (``CLIENT KILL TYPE replica``), so what ``write()`` writes to the master is
        acknowledged but reaches no replica (a frozen process cannot read it from its
        socket later: the master sent nothing). Then the master is SIGKILLed and the
        replica continued (SIGCONT): it is promoted without those writes.
        """
        replica = await self.replica_of(port)
        pid = self._pid(replica)
        os.kill(pid, signal.SIGSTOP)
        try:
            await call(port, "CLIENT", "KILL", "TYPE", "replica")
            await write()
            failover = asyncio.create_task(self.kill_master(port, timeout))
            await wait_for(self._gone(port), 10, f"master {port} to exit")
        finally:
            os.kill(pid, signal.SIGCONT)
        return await failover

    def _pid(self, port: int) -> int:
        proc = self._procs.get(port)
        pid = proc.pid if proc is not None else self._daemon_pid(port)
        if pid is None:
            raise LookupError(f"no redis-server process for port {port}")
        return pid

    async def restart(self, port: int, timeout: float = 30) -> None:
        """Start a killed node again on its directory and nodes.conf; wait until the cluster is healthy.

        A killed master whose replica took over rejoins as that replica's replica.
        """
        if port not in self.killed:
            raise ValueError(f"node {port} is running")
        self._spawn(port)
        await wait_for(self._answers(port), 10, f"redis-server on {port}")
        await self.wait_healthy(timeout)

    async def migrate_slot(self, slot: int, target_port: int, timeout: float = 30, batch: int = 100) -> None:
        """Move ``slot`` and its keys to the master on ``target_port``, live, the manual way.

        IMPORTING on the target, MIGRATING on the source, GETKEYSINSLOT + MIGRATE ... KEYS in
        batches, then SETSLOT NODE on the target, the source and every other master; done
        when every live node sees the target as the slot's owner.
        """
        nodes = await self.nodes()
        source_port = await self.owner_of(slot)
        if source_port == target_port:
            return
        ids = {n.port: n.node_id for n in nodes}
        target_id = ids[target_port]
        await call(target_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source_port])
        await call(source_port, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := await call(source_port, "CLUSTER", "GETKEYSINSLOT", slot, batch):
            await call(source_port, "MIGRATE", HOST, target_port, "", 0, 5000, "REPLACE", "KEYS", *keys)
        await call(target_port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        await call(source_port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for node in nodes:
            others = node.port not in (source_port, target_port) and node.port in self.live_ports
            if node.is_master and others:
                await call(node.port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)

        async def agreed() -> str | None:
            for live in self.live_ports:
                owner = next((n.port for n in await cluster_nodes(live)
                              if n.is_master and any(a <= slot <= b for a, b in n.slots)), None)
                if owner != target_port:
                    return f"node {live} sees slot {slot} on {owner}"
            return await self.problem()

        await wait_for(agreed, timeout, f"slot {slot} to move to {target_port}")



# -- for the tests (pytest is imported only here: the CLI runs without it) -------------------


def unavailable(reason: str) -> None:
    """No cluster for the tests: skip with the reason, or fail under ``CI=true``."""
    import pytest
    from redis_helpers import IN_CI

    if IN_CI:
        pytest.fail(f"Redis Cluster tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(f"Redis Cluster tests skipped: {reason}")


async def start_private_cluster(base_dir: Path) -> LocalRedisCluster:
    """A new cluster on free ports under ``base_dir`` (tried again on new ports if one was taken)."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        unavailable("redis-server / redis-cli are not installed (apt-get install redis-server)")
    for attempt in range(3):
        cluster = LocalRedisCluster(base_dir / f"try{attempt}", free_cluster_ports())
        try:
            await cluster.start()
            return cluster
        except Exception:
            await cluster.stop()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def private_cluster(base_dir: Path) -> AsyncIterator[LocalRedisCluster]:
    """``async with private_cluster(dir) as cluster:`` started, and stopped afterwards."""
    cluster = await start_private_cluster(base_dir)
    try:
        yield cluster
    finally:
        await cluster.stop()

# -- helpers for the tests ------------------------------------------------------------------


def cluster_url(cluster: LocalRedisCluster) -> str:
    """The ``redis+cluster://host:port,...`` URL of the cluster (its seed nodes)."""
    return cluster.url


async def flush_prefix(cluster: LocalRedisCluster, prefix: str) -> int:
    """Delete the keys starting with ``prefix`` on every master (SCAN each); return how many."""
    deleted = 0
    for master in await cluster.masters():
        conn = await Connection.open(master.port)
        try:
            cursor = b"0"
            while True:
                cursor, keys = await conn.call("SCAN", cursor, "MATCH", prefix.replace("*", r"\*") + "*",
                                               "COUNT", 1000)
                if keys:
                    replies = await conn.pipeline([("UNLINK", key) for key in keys])
                    deleted += sum(r for r in replies if isinstance(r, int))
                if cursor == b"0":
                    break
        finally:
            await conn.close()
    return deleted


# -- CLI --------------------------------------------------------------------------------------


async def _cli_start(base_dir: Path, base_port: int) -> str:
    ports = list(range(base_port, base_port + 6))
    cluster = LocalRedisCluster(base_dir, ports, daemonize=True)
    with contextlib.suppress(OSError, RespError, TimeoutError, EOFError, asyncio.IncompleteReadError):
        if await cluster.problem() is None and len(await cluster.masters()) == 3:
            return cluster.url
    if base_dir.exists():  # left over or unhealthy: start again from scratch
        await LocalRedisCluster.attach(base_dir).stop()
    busy = [p for p in ports for q in (p, p + BUS_OFFSET) if not port_free(q)]
    if busy:
        raise SystemExit(f"ports {busy} are in use by something that is not a healthy cluster")
    try:
        await cluster.start()
    except BaseException:
        await cluster.stop()
        raise
    return cluster.url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, required=True, help="the cluster's directory")
    parser.add_argument("--base-port", type=int, default=7100, help="six ports from this one (start)")
    args = parser.parse_args(argv)
    if args.action == "start":
        print(asyncio.run(_cli_start(args.dir, args.base_port)))
    elif args.dir.exists():
        asyncio.run(LocalRedisCluster.attach(args.dir).stop())


if __name__ == "__main__":
    main()
