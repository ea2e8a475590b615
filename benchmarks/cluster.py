"""Cluster benchmark: two nodes sharing Redis (one server, or a Redis Cluster) against one node.

    python benchmarks/cluster.py [--quick] [--reps 3] [--subscribers 100,1000] [--json out.json]
                                 [--kinds memory,cluster,shards] [--rooms K] [--shard-replicas 0|1]
                                 [--publishers 1] [--on-node-a 0.5] [--redis-url redis://...]

The kinds (``--kinds``, default ``memory,cluster``; ``--only KIND`` for one):

- **memory**: one ``dialogue_server.py`` node (memory broker), as in ``fanout.py``;
- **cluster**: two ``cluster_server.py`` nodes (uvicorn subprocesses on two ports)
  whose ``RedisBroker`` shares ``--redis-url`` under a key prefix of their own
  (one per repetition, deleted afterwards);
- **shards**: the same two nodes on a ``RedisClusterBroker``
  (``redis+cluster://...?prefix=...``) over a local Redis Cluster of 3 masters
  that this script starts from ``redis-server`` (``tests/redis_cluster.py``'s
  ``LocalRedisCluster``, on free ports, in a temporary directory) once per run and
  stops at the end, Ctrl-C, SIGTERM or an exception included (only a SIGKILL leaves
  it running: ``pgrep -a redis-server``). Masters only by default: a replica would
  add its replication work to the same core; ``--shard-replicas 1`` starts 3 + 3,
  the replicas pinned to the same core and their CPU reported apart
  (``redis_replica_util``) but counted in the server CPU.

In the two-node kinds the N subscribers are split across the nodes (the share
``--on-node-a``, rounded up, on node A, the publisher's) and the publisher
joins node A, so half the deliveries cross nodes. Every event goes through
Redis (the Lua publish script, then (sharded) pub/sub back to both nodes), the
publisher's node included.

Rooms (``--rooms K``; default 3 when ``shards`` is measured, else 1, the room
``bench``): each node's subscribers are spread evenly over K rooms and the
publisher joins them all and publishes to them in turn. The rooms are named so
that their hash slots (``{5:bench-3}``: the room's hash tag) fall on different
masters, room i on master i mod 3 (of the split ``redis-cli --cluster create``
makes, checked against the started cluster's slot map), so with ``shards`` every
master runs a third of the publish scripts and each node holds one sharded
subscriber connection per master. Every kind of a run uses the same rooms, so
``cluster`` (one Redis) and ``shards`` (3 masters) compare like for like.

CPU split (2 cores): the system under test gets CPU 0 in every kind - the
memory node alone; both nodes and ``redis-server`` (all its threads, pinned
for the cluster repetitions and restored afterwards); or both nodes and the
three masters (and replicas) of the Redis Cluster (all their threads, pinned
for the shards repetitions, on every CPU in between). This process, the load
generator, is pinned to CPU 1. Same hardware for all, so the ratios are the
cost of the Redis broker (the Redis round trip, redis-py, a second process; for
``shards``, the cluster client and one subscriber connection per master), not a
scaling figure: with a core per node and per shard a cluster adds capacity. On
a 2-core machine ``shards`` shows that the sharded path works and what it costs
per message, not the aggregate throughput three shards give.

Per kind and repetition (alternating, ABBA), on fresh servers with a short
warm-up, for each N in ``--subscribers``: throughput (``--window`` publishes in
flight for ``--duration`` s; delivered msgs/s; server CPU per delivered
message, summed over both nodes and Redis for the two-node kinds), then
publish-to-delivery latency at a fixed offered rate (``--rates``, publishes/s
over all the rooms, as ``fanout.py``). For the two-node kinds the same figures
are also given per half (the subscribers on the publisher's node and on the
other node) and the CPU of each process in both phases. Medians over the
repetitions, the ratios to memory (and shards/cluster) and the targets for
each two-node kind: p50 latency at most 1 ms above the memory broker's,
throughput at least 0.6x the memory broker's.

``--json``: per kind in ``medians`` (and each run), besides ``fanout.py``'s
figures: ``subscriber_nodes@N`` (app nodes subscribed to a room, the
publisher's included: 2, or 1 with ``--on-node-a 1``), ``node_a_util@N``,
``node_b_util@N``, ``redis_util@N`` (Redis, summed over the masters for
shards), ``redis_shard_util@N`` (shards: a list, one per master, in slot order),
``redis_replica_util@N`` (``--shard-replicas 1``) - CPU in the throughput phase,
in cores (1.0 = a core) - the same in the latency phase (``lat_node_a_util@N``,
``lat_node_b_util@N``, ``lat_redis_util@N``, ``lat_redis_shard_util@N``, ...),
and ``same_*`` / ``other_*`` per half. Top level: ``rooms`` (each room's slot
and master), ``shards`` (the Redis Cluster started), ``cpu_split``, ``targets``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import importlib.util
import math
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from _client import ROOM, Publisher, Publishers, publisher, publishers, subscribers
from _cpu import ForeignLoad
from _phases import latency as latency_phase
from _phases import percentile, throughput
from _report import ratio, wide_table
from _reps import (
    Run,
    Runs,
    alternate,
    counts,
    fanout_args,
    fanout_parser,
    medians_of,
    quietest,
    run_all,
    setup_process,
    warn_if_changed,
    write_json,
)
from _runner import Pinning, figures, rate_for
from _servers import (
    REPO_DIR,
    CpuMeter,
    ServerError,
    ServerProcess,
    library_state,
    proc_cpu_seconds,
    running_server,
)
from _tally import Tallies, Tally
from fanout import DEFAULT_RATES
from redis import Redis

from dialogue_fastapi.brokers.redis_scripts import RoomKeys

KINDS = ("memory", "cluster", "shards")
DEFAULT_KINDS = "memory,cluster"
COLUMNS = (("memory", "memory"), ("cluster", "cluster"), ("shards", "shards"))
RATIOS = (("cluster", "memory"), ("shards", "memory"), ("shards", "cluster"))
TWO_NODE = ("cluster", "shards")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"  # the tests use database 15
TARGET_ADDED_P50_MS = 1.0
TARGET_THROUGHPUT = 0.6
MASTERS = 3
SLOTS = 16384
LOCAL_CLUSTER = REPO_DIR / "tests" / "redis_cluster.py"  # LocalRedisCluster, standard library only


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = fanout_parser(KINDS, DEFAULT_RATES)
    add = p.add_argument
    add("--kinds", default=DEFAULT_KINDS,
        help=f"comma-separated, of {', '.join(KINDS)} (default {DEFAULT_KINDS})")
    add("--rooms", type=int, default=None,
        help=f"rooms the subscribers and publishes spread over, on different Redis Cluster masters "
             f"(default {MASTERS} if shards is measured, else 1)")
    add("--shard-replicas", type=int, choices=(0, 1), default=0,
        help="shards: replicas per master (default 0: 3 masters only; 1: 3 + 3, all on CPU 0)")
    add("--publishers", type=int, default=1, help="publishing connections, all on node A (default 1)")
    add("--on-node-a", type=float, default=0.5, help="share of the subscribers on node A (default 0.5)")
    add("--reader", choices=("raw", "websockets"), default="raw", help="subscribers' receive path")
    add("--redis-url", default=DEFAULT_REDIS_URL, help=f"the cluster's Redis (default {DEFAULT_REDIS_URL})")
    add("--no-pin-redis", action="store_true", help="leave redis-server's CPU affinity alone (cluster)")
    a = fanout_args(p, argv, DEFAULT_RATES)
    a.kinds = [a.only] if a.only else [k.strip() for k in a.kinds.split(",") if k.strip()]
    unknown = sorted(set(a.kinds) - set(KINDS))
    if unknown or not a.kinds or len(set(a.kinds)) != len(a.kinds):
        p.error(f"--kinds: a comma-separated list of distinct kinds of {', '.join(KINDS)}, not {a.kinds}")
    a.rooms = a.rooms or (MASTERS if "shards" in a.kinds else 1)
    if not 1 <= a.rooms <= min(a.subscribers):
        p.error(f"--rooms must be between 1 and the smallest N ({min(a.subscribers)})")
    if not 0 <= a.on_node_a <= 1:
        p.error("--on-node-a is a share between 0 and 1")
    return a


# Redis: the process, its CPU, its keys ------------------------------------------------
@dataclass
class RedisServer:
    url: str
    version: str
    pid: int | None  # None: not a process of this machine we can see
    prefix: str  # this run's keys: {prefix}{rep}:...

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid) if self.pid is not None else 0.0

    def describe(self) -> str:
        where = f"pid {self.pid}" if self.pid is not None else "not a local process: its CPU is not counted"
        return f"redis-server {self.version} ({where}) at {self.url}, key prefix {self.prefix!r}"


def find_redis(url: str) -> RedisServer:
    """Ask Redis for its version and pid; keep the pid only if it is a local redis-server."""
    client = Redis.from_url(url, socket_connect_timeout=3)
    try:
        info = client.info("server")
    finally:
        client.close()
    pid: int | None = int(info["process_id"])
    parts = urlsplit(url)
    local = parts.scheme == "unix" or parts.hostname in ("127.0.0.1", "localhost", "::1")
    try:
        is_redis = Path(f"/proc/{pid}/comm").read_text().startswith("redis")
    except OSError:
        is_redis = False
    if not (local and is_redis):
        pid = None
    return RedisServer(url, str(info["redis_version"]), pid, new_prefix())


def new_prefix() -> str:
    return f"dialogue-bench-{secrets.token_hex(4)}:"


def delete_keys(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (hex and ``:`` only: nothing to escape); return how many."""
    client = Redis.from_url(url, socket_connect_timeout=3)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])
        return len(keys)
    finally:
        client.close()


def set_affinity(pid: int, cpus: set[int]) -> dict[int, set[int]]:
    """Give every thread of ``pid`` the mask ``cpus``; return the masks they had."""
    saved: dict[int, set[int]] = {}
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        with suppress(ProcessLookupError):
            saved[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
    return saved


@contextmanager
def pinned(pid: int | None, cpu: int | None) -> Iterator[None]:
    """Pin every thread of ``pid`` to ``cpu`` for the block; then give each its old mask back."""
    saved: dict[int, set[int]] = {}
    try:
        if pid is not None and cpu is not None:
            saved = set_affinity(pid, {cpu})
        yield
    finally:
        for tid, mask in saved.items():
            with suppress(OSError):
                os.sched_setaffinity(tid, mask)


def can_pin(pid: int) -> bool:
    """Whether we may set ``pid``'s affinity (tried by setting the mask it has)."""
    try:
        os.sched_setaffinity(pid, os.sched_getaffinity(pid))
    except OSError:
        return False
    return True


# the local Redis Cluster (shards) --------------------------------------------------------
@dataclass(frozen=True)
class RedisNode:
    """One redis-server of the local cluster, read as a CpuMeter."""

    port: int
    pid: int

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)


@dataclass
class Shards:
    """The started cluster: its masters in slot order, their replicas, where and what."""

    cluster: Any  # tests/redis_cluster.py's LocalRedisCluster (imported by path)
    module: ModuleType
    masters: list[RedisNode]
    replicas: list[RedisNode]
    slots: list[list[tuple[int, int]]]  # per master, inclusive ranges
    version: str
    base_dir: str
    prefix: str = field(default_factory=new_prefix)

    @property
    def url(self) -> str:
        return str(self.cluster.url)

    def nodes(self) -> list[RedisNode]:
        return self.masters + self.replicas

    def describe(self) -> str:
        kind = "3 masters" + (" + 3 replicas" if self.replicas else " (no replicas)")
        ports = ", ".join(f"{m.port} (pid {m.pid})" for m in self.masters)
        return (f"local Redis Cluster, redis-server {self.version}, {kind}: masters {ports}"
                f"{'; replicas ' + ', '.join(str(r.port) for r in self.replicas) if self.replicas else ''}"
                f"; key prefix {self.prefix!r}; in {self.base_dir}")

    def summary(self) -> dict[str, Any]:
        return {"url": self.url, "version": self.version, "base_dir": self.base_dir, "prefix": self.prefix,
                "masters": [asdict(m) | {"slots": s} for m, s in zip(self.masters, self.slots, strict=True)],
                "replicas": [asdict(r) for r in self.replicas]}


def load_local_cluster() -> ModuleType:
    """``tests/redis_cluster.py`` by path (the tests' directory is not a package)."""
    spec = importlib.util.spec_from_file_location("redis_cluster", LOCAL_CLUSTER)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {LOCAL_CLUSTER}")
    module = sys.modules.get("redis_cluster") or importlib.util.module_from_spec(spec)
    if "redis_cluster" not in sys.modules:
        sys.modules["redis_cluster"] = module
        spec.loader.exec_module(module)
    return module


def kill_leftovers(nodes: Sequence[RedisNode]) -> None:
    """At exit, whatever happened: SIGKILL each node still running (checked by its command
    line, so a pid reused since is left alone)."""
    for node in nodes:
        with suppress(OSError):
            title = Path(f"/proc/{node.pid}/cmdline").read_bytes()
            if b"redis-server" in title and f":{node.port}".encode() in title:
                os.kill(node.pid, signal.SIGKILL)


@asynccontextmanager
async def local_cluster(replicas: int, everywhere: set[int]) -> AsyncIterator[Shards]:
    """Start the Redis Cluster on free ports (3 attempts), then its threads may run on
    ``everywhere`` (they inherit this process's CPU); stop it on the way out, whatever happens."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed: the shards kind starts its own Redis Cluster")
    module = load_local_cluster()
    base_dir = tempfile.mkdtemp(prefix="dialogue-bench-shards-")
    count = MASTERS * (1 + replicas)
    cluster: Any = None
    nodes: list[RedisNode] = []
    try:
        for attempt in range(3):
            ports = module.free_cluster_ports(count)
            cluster = module.LocalRedisCluster(Path(base_dir) / f"try{attempt}", ports)
            try:
                await cluster.start(replicas=1 if replicas else 0)
                break
            except Exception:
                await cluster.stop()
                if attempt == 2:
                    raise
        assert cluster is not None
        for port in cluster.ports:
            info = await module.info_fields(port, "INFO", "server")
            nodes.append(RedisNode(port, int(info["process_id"])))
        atexit.register(kill_leftovers, list(nodes))
        for node in nodes:
            set_affinity(node.pid, everywhere)
        masters = await cluster.masters()  # by first slot
        by_port = {n.port: n for n in nodes}
        master_nodes = [by_port[m.port] for m in masters]
        yield Shards(cluster, module, master_nodes, [n for n in nodes if n not in master_nodes],
                     [list(m.slots) for m in masters], str(info.get("redis_version", "?")), base_dir)
    finally:
        if cluster is not None:
            await cluster.stop()  # SIGKILL, no await in between: runs through a cancellation
        kill_leftovers(nodes)
        shutil.rmtree(base_dir, ignore_errors=True)


# rooms on the masters ------------------------------------------------------------------
def crc16(data: bytes) -> int:
    """CRC16-XMODEM, Redis Cluster's key hash (``CLUSTER KEYSLOT`` = crc16(tag) mod 16384)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: str) -> int:
    data = key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return crc16(data) % SLOTS


def standard_split(masters: int = MASTERS) -> list[list[tuple[int, int]]]:
    """The slots ``redis-cli --cluster create`` gives each of ``masters`` (0-5460, 5461-10922, ...)."""
    per, first, cursor, out = SLOTS / masters, 0, 0.0, []
    for j in range(masters):
        last = math.floor(cursor + per - 1 + 0.5)  # lround, as redis-cli
        last = SLOTS - 1 if j == masters - 1 else min(SLOTS - 1, max(first, last))
        out.append([(first, last)])
        first, cursor = last + 1, cursor + per
    return out


@dataclass(frozen=True)
class Room:
    name: str
    slot: int  # of its keys and its sharded channel (the hash tag is the room's name)
    master: int  # index in slot order


def owner(slot: int, split: Sequence[Sequence[tuple[int, int]]]) -> int:
    return next(i for i, ranges in enumerate(split) if any(a <= slot <= b for a, b in ranges))


def room_layout(k: int, split: Sequence[Sequence[tuple[int, int]]]) -> list[Room]:
    """``k`` rooms, room i on master i mod len(split): ``bench`` alone for k = 1, else the
    first free names ``bench-0``, ``bench-1``, ... whose slot is on the wanted master."""
    def slot(name: str) -> int:
        return key_slot(RoomKeys("", name, tagged=True).seq)  # the prefix is not part of the tag

    if k == 1:
        return [Room(ROOM, slot(ROOM), owner(slot(ROOM), split))]
    rooms: list[Room] = []
    candidates = (f"{ROOM}-{j}" for j in range(1_000_000))
    for i in range(k):
        want = i % len(split)
        name = next(c for c in candidates if owner(slot(c), split) == want)
        rooms.append(Room(name, slot(name), want))
    return rooms


async def check_layout(shards: Shards, rooms: Sequence[Room]) -> None:
    """The started cluster agrees: CLUSTER KEYSLOT of each room's seq key, and its master."""
    for room in rooms:
        key = RoomKeys(shards.prefix, room.name, tagged=True).seq
        got = int(await shards.cluster.slot_of(key))
        port = int(await shards.cluster.owner_of(got))
        if got != room.slot or port != shards.masters[room.master].port:
            raise RuntimeError(f"room {room.name!r}: slot {got} on port {port}, expected slot {room.slot} "
                               f"on master {room.master} (port {shards.masters[room.master].port})")


def describe_rooms(rooms: Sequence[Room]) -> str:
    return ", ".join(f"{r.name} (slot {r.slot}, master {r.master})" for r in rooms)


# the system under test ------------------------------------------------------------------
@dataclass
class RunContext:
    """What every repetition needs besides the arguments."""

    pins: Pinning
    redis: RedisServer | None  # the cluster kind's Redis
    shards: Shards | None  # the shards kind's Redis Cluster
    rooms: list[Room]


class Group:
    """The nodes of one kind (plus Redis for the two-node kinds), read as one server."""

    def __init__(self, nodes: list[ServerProcess], redis: Sequence[CpuMeter] = (),
                 replicas: Sequence[CpuMeter] = (), per_shard: bool = False) -> None:
        self.nodes, self.redis, self.replicas, self.per_shard = nodes, list(redis), list(replicas), per_shard

    def cpu_seconds(self) -> float:
        return sum(part.cpu_seconds() for part in [*self.nodes, *self.redis, *self.replicas])

    def part_seconds(self) -> dict[str, Any]:
        """CPU seconds of node_a, node_b, redis (all masters) and, for shards, each master
        (``redis_shard``, a list) and the replicas."""
        if len(self.nodes) != 2:
            return {}
        out: dict[str, Any] = {"node_a": self.nodes[0].cpu_seconds(), "node_b": self.nodes[1].cpu_seconds()}
        if self.redis:
            shard = [m.cpu_seconds() for m in self.redis]
            out["redis"] = sum(shard)
            if self.per_shard:
                out["redis_shard"] = shard
        if self.replicas:
            out["redis_replica"] = sum(r.cpu_seconds() for r in self.replicas)
        return out


def utils(
    before: dict[str, Any], after: dict[str, Any], seconds: float, prefix: str, n: int
) -> dict[str, Any]:
    """``{prefix}{part}_util@{n}``: each part's CPU between two ``part_seconds``, in cores."""
    out: dict[str, Any] = {}
    for name, end in after.items():
        key, start = f"{prefix}{name}_util@{n}", before[name]
        if isinstance(end, list):
            out[key] = [(e - b) / seconds for b, e in zip(start, end, strict=True)]
        else:
            out[key] = (end - start) / seconds
    return out


@asynccontextmanager
async def running(kind: str, ctx: RunContext, prefix: str) -> AsyncIterator[Group]:
    cpu = ctx.pins.server
    env = {"BENCH_ROOMS": ",".join(r.name for r in ctx.rooms)}
    if kind == "memory":
        async with running_server("dialogue", cpu, env=env, label="memory node") as node:
            yield Group([node])
        return
    redis: list[CpuMeter] = []
    replicas: list[CpuMeter] = []
    if kind == "cluster":
        assert ctx.redis is not None
        env |= {"BENCH_REDIS_URL": ctx.redis.url, "BENCH_REDIS_PREFIX": prefix}
        redis = [ctx.redis] if ctx.redis.pid is not None else []
    else:
        assert ctx.shards is not None
        env |= {"BENCH_REDIS_URL": f"{ctx.shards.url}?prefix={prefix}", "BENCH_REDIS_PREFIX": prefix}
        redis, replicas = list(ctx.shards.masters), list(ctx.shards.replicas)
    async with (
        running_server("cluster", cpu, env=env, label=f"{kind} node A") as a,
        running_server("cluster", cpu, env=env, label=f"{kind} node B") as b,
    ):
        yield Group([a, b], redis, replicas, per_shard=kind == "shards")


@dataclass(frozen=True)
class Layout:
    """Where the N subscribers are: ``parts`` (node index, room, count); per room, the
    deliveries a publish to it makes (publishes go to the rooms in turn)."""

    parts: list[tuple[int, str, int]]
    per_room: list[int]
    subscriber_nodes: float  # app nodes subscribed to a room (the publisher's included), mean


def layout(n: int, rooms: Sequence[str], nodes: int, on_a: float) -> Layout:
    """Node A gets ceil(n * on_a) of the subscribers, node B the rest; each node spreads its
    own evenly over the rooms (the first rooms get the odd ones, so the rooms' sizes descend)."""
    per_node = [n] if nodes == 1 else [math.ceil(n * on_a), n - math.ceil(n * on_a)]
    k = len(rooms)
    parts = [(node, room, c // k + (1 if r < c % k else 0))
             for node, c in enumerate(per_node) for r, room in enumerate(rooms)]
    per_room = [sum(c for _, name, c in parts if name == room) for room in rooms]
    # node A holds the publisher, a member of every room: it is subscribed to each
    subscribed = [1 + sum(1 for node, name, c in parts if name == room and node > 0 and c > 0)
                  for room in rooms]
    return Layout([p for p in parts if p[2] > 0], per_room, sum(subscribed) / k)


@asynccontextmanager
async def split_room(
    group: Group, n: int, raw: bool, rooms: Sequence[str], pubs: int = 1, on_a: float = 0.5
) -> AsyncIterator[tuple[Tallies, list[list[Tally]], Publisher | Publishers, Layout]]:
    """``n`` subscribers laid out by ``layout`` with the publishers on node A; the tallies
    read as one, and per node.

    One publisher, as ``fanout.py``, also receives its events; ``pubs`` > 1 publishers do not.
    """
    where = layout(n, rooms, len(group.nodes), on_a)
    by_node: list[list[Tally]] = [[] for _ in group.nodes]
    async with AsyncExitStack() as stack:
        for node, room, count in where.parts:
            url = group.nodes[node].url
            by_node[node].append(await stack.enter_async_context(subscribers(url, count, raw, room)))
        url = group.nodes[0].url
        pub: Publisher | Publishers
        if pubs == 1:
            pub = await stack.enter_async_context(publisher(url, rooms))
        else:
            pub = await stack.enter_async_context(publishers(url, pubs, rooms))
        yield Tallies(*(t for tallies in by_node for t in tallies)), by_node, pub, where


# the measurements ----------------------------------------------------------------------
async def measure_n(group: Group, n: int, args: argparse.Namespace, ctx: RunContext) -> dict[str, Any]:
    """``_runner.measure_n`` over the group, with the per-node (and per-shard) figures."""
    pins, names = ctx.pins, [r.name for r in ctx.rooms]
    room = split_room(group, n, args.reader == "raw", names, args.publishers, args.on_node_a)
    async with room as (tally, by_node, pub, where):
        fan = where.per_room if len(where.per_room) > 1 else where.per_room[0]
        load = ForeignLoad(pins.own(group))
        cpu0 = group.part_seconds()
        tp = await throughput(group, pub, tally, fan, args.duration, args.window, args.max_lag, timeout=60)
        cpu1 = group.part_seconds()
        foreign_tp = load.cores(pins.own(group))
        delivered = [sum(t.delivered for t in tallies) for tallies in by_node]
        load = ForeignLoad(pins.own(group))
        lcpu0, lt0 = group.part_seconds(), time.perf_counter()
        lat = await latency_phase(
            group, pub, tally, fan, rate_for(args, n), args.latency_duration, 0.5, timeout=60
        )
        lcpu1, lt1 = group.part_seconds(), time.perf_counter()
        foreign_lat = load.cores(pins.own(group))
        lats = [sorted(ns for t in tallies for ns in t.latencies) for tallies in by_node]
    out = figures(n, tp, lat, foreign_tp, foreign_lat) | {f"subscriber_nodes@{n}": where.subscriber_nodes}
    if len(group.nodes) != 2:
        return out
    halves: dict[str, Any] = {}
    for name, got, values in zip(("same", "other"), delivered, lats, strict=True):
        halves[f"{name}_deliv_per_s@{n}"] = got / tp.seconds
        halves[f"{name}_p50_ms@{n}"] = percentile(values, 0.50) / 1e6
        halves[f"{name}_p99_ms@{n}"] = percentile(values, 0.99) / 1e6
    halves |= utils(cpu0, cpu1, tp.seconds, "", n) | utils(lcpu0, lcpu1, lt1 - lt0, "lat_", n)

    def cpu(prefix: str) -> str:
        shown = []
        for part in cpu1:
            v = halves[f"{prefix}{part}_util@{n}"]
            shown.append(f"{part} " + ("/".join(f"{x:.0%}" for x in v) if isinstance(v, list)
                                       else f"{v:.0%}"))
        return ", ".join(shown)

    print(
        f"      other node: {halves[f'other_deliv_per_s@{n}']:,.0f} msg/s, p50 "
        f"{halves[f'other_p50_ms@{n}']:.2f} ms p99 {halves[f'other_p99_ms@{n}']:.2f} ms; "
        f"publisher's node: p50 {halves[f'same_p50_ms@{n}']:.2f} ms p99 "
        f"{halves[f'same_p99_ms@{n}']:.2f} ms\n      CPU, throughput phase: {cpu('')}; "
        f"latency phase: {cpu('lat_')}",
        flush=True,
    )
    return out | halves


async def run_one(kind: str, args: argparse.Namespace, ctx: RunContext) -> dict[str, Any]:
    """Fresh servers (and, for Redis, a fresh key prefix), a warm-up, then every N."""
    budget = 60 + len(args.subscribers) * (args.duration + args.latency_duration + 90)
    run_prefix = ctx.shards.prefix if kind == "shards" and ctx.shards else ""
    run_prefix = run_prefix or (ctx.redis.prefix if kind == "cluster" and ctx.redis else "")
    prefix = f"{run_prefix}{secrets.token_hex(3)}:"
    out: dict[str, Any] = {}
    try:
        with ExitStack() as pins:
            if kind == "cluster" and ctx.redis is not None and not args.no_pin_redis:
                pins.enter_context(pinned(ctx.redis.pid, ctx.pins.server))
            if kind == "shards" and ctx.shards is not None:
                for node in ctx.shards.nodes():
                    pins.enter_context(pinned(node.pid, ctx.pins.server))
            async with asyncio.timeout(budget), running(kind, ctx, prefix) as group:
                names = [r.name for r in ctx.rooms]
                room = split_room(group, max(20, len(names)), args.reader == "raw", names, args.publishers,
                                  args.on_node_a)
                async with room as (tally, _, pub, where):
                    fan = where.per_room if len(where.per_room) > 1 else where.per_room[0]
                    await throughput(group, pub, tally, fan, 0.5, args.window, args.max_lag, timeout=20)
                for n in args.subscribers:
                    out |= await measure_n(group, n, args, ctx)
    finally:
        if kind == "cluster" and ctx.redis is not None:
            await asyncio.to_thread(delete_keys, ctx.redis.url, prefix)
        if kind == "shards" and ctx.shards is not None:
            with suppress(Exception):
                async with asyncio.timeout(30):
                    await ctx.shards.module.flush_prefix(ctx.shards.cluster, prefix)
    return out


def medians_with_lists(runs: Runs) -> dict[str, dict[str, Any]]:
    """``medians_of``, and for a figure that is a list (one per shard) the median of each item."""
    scalars = {k: [{m: v for m, v in r.items() if not isinstance(v, list)} for r in rs]
               for k, rs in runs.items()}
    med: dict[str, dict[str, Any]] = dict(medians_of(scalars))
    for kind, rs in runs.items():
        keys = sorted({m for r in rs for m, v in r.items() if isinstance(v, list) and not m.startswith("_")})
        for m in keys:
            values = [r[m] for r in rs if m in r]
            items = range(len(values[0]))
            med.setdefault(kind, {})[m] = [statistics.median(v[i] for v in values) for i in items]
    return med


# report --------------------------------------------------------------------------------
def cpu_split(pins: Pinning, kinds: Sequence[str], redis: RedisServer | None, shards: Shards | None,
              args: argparse.Namespace) -> str:
    if pins.server is None or pins.client is None:
        return "fewer than 2 CPUs: nothing pinned, everything shares them"
    parts = []
    if "memory" in kinds:
        parts.append(f"memory: its node on CPU {pins.server}")
    if "cluster" in kinds:
        if redis is None or redis.pid is None:
            where = "redis-server unpinned (not a local process)"
        elif args.no_pin_redis:
            where = "redis-server not pinned (--no-pin-redis)"
        else:
            where = f"redis-server (all threads; restored after each repetition) on CPU {pins.server}"
        parts.append(f"cluster: nodes A and B and {where}")
    if "shards" in kinds:
        replicas = len(shards.replicas) if shards is not None else 0
        what = f"{MASTERS} masters" + (f" and {replicas} replicas" if replicas else "")
        parts.append(f"shards: nodes A and B and the Redis Cluster's {what} (all threads, during the shards "
                     f"repetitions; every CPU in between) on CPU {pins.server}")
    return "; ".join(parts) + f"; load generator on CPU {pins.client}"


def verdicts(med: dict[str, dict[str, Any]], sizes: list[int]) -> tuple[str, dict[str, Any]]:
    lines: list[str] = []
    found: dict[str, Any] = {}
    mem = med.get("memory", {})
    for kind in (k for k in TWO_NODE if k in med):
        lines.append(f"targets ({kind} against memory, medians):")
        two, tag = med[kind], "" if kind == "cluster" else f"{kind}_"  # cluster: the keys of before
        for n in sizes:
            key = f"p50_ms@{n}"
            if key in mem and key in two:
                added = two[key] - mem[key]
                ok = added <= TARGET_ADDED_P50_MS
                found[f"{tag}added_p50_ms@{n}"] = {"value": added, "pass": ok}
                lines.append(
                    f"  latency p50 added (N={n}) <= {TARGET_ADDED_P50_MS:g} ms: {two[key]:.2f} - "
                    f"{mem[key]:.2f} = {added:+.2f} ms -> {'PASS' if ok else 'FAIL'}"
                )
            else:
                lines.append(f"  latency p50 added (N={n}) <= {TARGET_ADDED_P50_MS:g} ms: not measured")
            r = ratio(med, f"deliv_per_s@{n}", kind, "memory")
            if r is None:
                lines.append(f"  delivered msgs/s (N={n}) >= {TARGET_THROUGHPUT}x memory: not measured")
            else:
                ok = r >= TARGET_THROUGHPUT
                found[f"{tag}throughput_ratio@{n}"] = {"value": r, "pass": ok}
                verdict = "PASS" if ok else "FAIL"
                lines.append(
                    f"  delivered msgs/s (N={n}) >= {TARGET_THROUGHPUT}x memory: {r:.2f}x -> {verdict}"
                )
    return "\n".join(lines) or "targets: no two-node kind measured", found


def print_header(args: argparse.Namespace, split: str, ctx: RunContext, library: dict[str, str]) -> None:
    rates = ", ".join(f"N={n}: {rate_for(args, n):g}/s" for n in args.subscribers)
    reader = "raw frames after the join" if args.reader == "raw" else "with websockets recv()"
    two = [k for k in args.kinds if k in TWO_NODE]
    lines = [
        f"machine: {os.cpu_count()} CPUs; {split}",
        "servers: uvicorn --ws websockets-sansio --log-level warning --no-access-log (--loop auto: "
        f"{'uvloop' if find_spec('uvloop') else 'asyncio'}); memory: dialogue_server.py; cluster: "
        "2 x cluster_server.py (RedisBroker); shards: 2 x cluster_server.py (RedisClusterBroker)",
        *([f"redis: {ctx.redis.describe()} (deleted afterwards)"] if ctx.redis is not None else []),
        *([f"shards: {ctx.shards.describe()} (stopped afterwards)"] if ctx.shards is not None else []),
        f"library: dialogue_fastapi at {library['commit']}, newest file {library['newest_file']}",
        f"kinds: {', '.join(args.kinds)}; rooms ({len(ctx.rooms)}, publishes in turn): "
        f"{describe_rooms(ctx.rooms)}",
        *([f"{', '.join(two)}: subscribers split across the nodes, the publisher on node A; every event "
           "goes through Redis; server CPU = both nodes + Redis"] if two else []),
        f"load generator: this process, one event loop; subscribers read {reader}",
        f"reps={args.reps}; N={args.subscribers}; throughput {args.duration:g} s (window "
        f"{args.window}, {args.publishers} publishing connection(s)); two-node kinds: {args.on_node_a:.0%} "
        f"of the subscribers on node A; latency {args.latency_duration:g} s at {rates}",
    ]
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    everywhere = os.sched_getaffinity(0)  # before this process is pinned: the shards' mask between reps
    pins, _ = setup_process()
    redis: RedisServer | None = None
    if "cluster" in args.kinds:
        try:
            redis = find_redis(args.redis_url)
        except Exception as exc:
            print(f"Redis at {args.redis_url} is not usable ({type(exc).__name__}: {exc})", file=sys.stderr)
            return 2
        if redis.pid is not None and not args.no_pin_redis and not can_pin(redis.pid):
            print(f"cannot set redis-server's CPU affinity (pid {redis.pid}); it stays unpinned")
            args.no_pin_redis = True
    library = library_state()
    ctx = RunContext(pins, redis, None, room_layout(args.rooms, standard_split()))
    report: dict[str, Any] = {}

    async def repetition(kind: str, _rep: int) -> Run | None:
        return await quietest(kind, lambda _n: run_one(kind, args, ctx), args, pins)

    async def everything() -> Runs:
        main_task = asyncio.current_task()
        assert main_task is not None  # SIGTERM ends it like Ctrl-C (alternate does the same later)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
        async with AsyncExitStack() as stack:
            if "shards" in args.kinds:
                try:
                    started = local_cluster(args.shard_replicas, everywhere)
                    ctx.shards = await stack.enter_async_context(started)
                except Exception as exc:
                    raise ServerError(f"the local Redis Cluster did not start: {exc}") from exc
                ctx.rooms = room_layout(args.rooms, ctx.shards.slots)
                await check_layout(ctx.shards, ctx.rooms)
            report["cpu_split"] = cpu_split(pins, args.kinds, redis, ctx.shards, args)
            report["shards"] = ctx.shards.summary() if ctx.shards is not None else None
            print_header(args, report["cpu_split"], ctx, library)
            return await alternate(args.kinds, args.reps, repetition)

    try:
        runs = run_all(everything())
    except ServerError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        if redis is not None:  # each repetition deletes its keys; this catches an interrupted one
            left = delete_keys(redis.url, redis.prefix)
            if left:
                print(f"redis: deleted {left} key(s) left under {redis.prefix!r}")
    if runs is None:
        return 130
    med = medians_with_lists(runs)
    verdict_text, found = verdicts(med, args.subscribers)
    print(f"\nmedians over the repetitions ({counts(runs)}):\n{wide_table(med, COLUMNS, RATIOS)}\n\n"
          f"{verdict_text}")
    print(f"CPU split: {report['cpu_split']}")
    end = library_state()
    warn_if_changed(library, end)
    write_json(args.json, args, cpu_split=report["cpu_split"], library={"start": library, "end": end},
               redis=None if redis is None else vars(redis), shards=report["shards"],
               rooms=[asdict(r) for r in ctx.rooms], runs=runs, medians=med, targets=found)
    return 0 if med else 1


if __name__ == "__main__":
    sys.exit(main())
