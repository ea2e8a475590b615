"""Capacity model: the app-node processes and Redis shards a load needs, from measured costs.

    python benchmarks/capacity.py [--fanout FILE] [--cluster FILE ...] [--memory FILE]
                                  [--scenario FILE] [--json out.json]

No measurement is run. The costs come from the ``--json`` files of the benchmarks
(``fanout.py``, ``cluster.py``, ``shape.py``), or, for a file not given, from the figures
published in benchmarks/README.md and docs/benchmarks.md (``DOCS_*`` below); a cost no
benchmark emits yet is a documented estimate. Each is printed with where it came from.
The model (docs/scaling.md, "Capacity model"), per second:

    P = sum over room buckets of rooms * rate                     publishes
    D = sum of rooms * rate * k                                   deliveries (k: room size)
    S = sum of rooms * rate * m(k, n)                             pub/sub messages to app nodes
        m(k, n) = n * (1 - (1 - 1/n) ** k)                        nodes subscribed to a room of k
    app CPU   = D * deliver + P * publish + S * receive + C * conn_cpu      (C: connections)
    processes = max(ceil(app CPU / target_cpu), ceil(C * conn_kib / node_memory)), the least n
                with processes(n) <= n (m grows with n)
    Redis CPU = P * redis_publish + S * redis_node;  shards = ceil(Redis CPU / redis_target_cpu)

``--scenario FILE``: a JSON object (or a list of them) in the form of ``EXAMPLES`` below,
optionally with ``"costs": {name: value}`` overriding costs. ``--json``: the costs with
their sources and every scenario's figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

# The published figures, in the shape of the benchmarks' --json "medians" (or shape.py's run),
# so that a file and these defaults go through the same derivation.
DOCS_CLUSTER = {  # benchmarks/README.md, cluster.py, 2026-11-26 at e38680d: N=100, one publisher
    "source": "benchmarks/README.md default (cluster.py, 2026-11-26, N=100)",
    "args": {"on_node_a": 0.5},
    "medians": {"cluster": {
        "deliv_per_s@100": 112_870.0, "same_deliv_per_s@100": 56_435.0, "other_deliv_per_s@100": 56_435.0,
        "node_a_util@100": 0.52, "node_b_util@100": 0.43, "redis_util@100": 0.04,
    }},
}
DOCS_MEMORY = {  # benchmarks/README.md, shape.py --idle 18000, 2026-12-03 at 63a943b
    "source": "benchmarks/README.md default (shape.py --idle 18000, 2026-12-03)",
    "args": {"idle": 18_000, "connections": 18_000, "personal_rate": 450.0},
    "runs": {"dialogue": {"kib_per_conn_total": 43.9, "server_util": 0.35, "deliv_per_s": 450.0}},
}
# Estimates, for costs no benchmark emits yet (each printed as "estimate").
EST_DELIVER_US = (21.0, "2 x the 10.52 us of a batched frame (docs/benchmarks.md fan-out "
                        "N=1000); a frame written alone costs 1.5-2.5x (benchmarks/README.md)")
EST_RECEIVE_US = (10.0, "a node reading one pub/sub message (redis-py, decode, seq check, "
                        "hand-off to the hub); no benchmark separates it yet")
EST_REDIS_NODE_US = (3.0, "Redis sending one pub/sub message to one subscribed node")

COST_DOCS = {
    "deliver_us": "app CPU us per delivered frame (written alone, not batched)",
    "publish_us": "app CPU us per publish on the Redis broker (command, script round trip, ack)",
    "receive_us": "app CPU us per pub/sub message a node receives (one per subscribed room per publish)",
    "conn_us_per_s": "app CPU us per connection per second with nothing delivered (pings, GC, idle checks)",
    "conn_kib": "RSS KiB per joined connection",
    "redis_publish_us": "Redis CPU us per publish (the script: seq, stream, history, PUBLISH)",
    "redis_node_us": "Redis CPU us per publish per app node subscribed to the room",
}


@dataclass(frozen=True)
class Figure:
    value: float
    source: str
    estimate: bool = False


@dataclass(frozen=True)
class Costs:
    deliver_us: float
    publish_us: float
    receive_us: float
    conn_us_per_s: float
    conn_kib: float
    redis_publish_us: float
    redis_node_us: float


@dataclass(frozen=True)
class Bucket:
    size: int  # members per room
    rooms: float
    rate: float  # publishes/s per room


@dataclass(frozen=True)
class Scenario:
    name: str
    connections: float
    buckets: tuple[Bucket, ...]
    target_cpu: float = 0.6  # of one core, per app-node process (one process per core)
    node_memory_mib: float = 2048.0  # RSS budget for connections, per process
    redis_target_cpu: float = 0.5  # of a shard's one core


@dataclass(frozen=True)
class Plan:
    publishes_per_s: float
    deliveries_per_s: float
    node_messages_per_s: float  # pub/sub messages Redis sends to app nodes (S)
    nodes_per_room: float  # publish-weighted mean of m(k, n)
    app_cpu_cores: float
    app_cpu_split: dict[str, float]  # cores: deliveries, publishes, receives, connections
    processes_cpu: int
    processes_memory: int
    processes: int
    redis_cpu_cores: float
    shards: int
    hottest_room_shard_share: float  # the busiest single room's Redis CPU / redis_target_cpu


def nodes_per_room(k: int, n: int) -> float:
    """Expected distinct nodes holding a room of ``k`` members placed uniformly at random over
    ``n`` nodes: n * (1 - (1 - 1/n)^k), at most min(k, n)."""
    return n * (1.0 - (1.0 - 1.0 / n) ** k)


def plan(s: Scenario, c: Costs, max_rounds: int = 1000) -> Plan:
    """The model: ``n`` is the least process count whose own load needs at most ``n``."""
    pubs = sum(b.rooms * b.rate for b in s.buckets)
    deliveries = sum(b.rooms * b.rate * b.size for b in s.buckets)
    memory = math.ceil(s.connections * c.conn_kib / (s.node_memory_mib * 1024))
    n = 1
    for _ in range(max_rounds):
        node_msgs = sum(b.rooms * b.rate * nodes_per_room(b.size, n) for b in s.buckets)
        split = {
            "deliveries": deliveries * c.deliver_us / 1e6,
            "publishes": pubs * c.publish_us / 1e6,
            "receives": node_msgs * c.receive_us / 1e6,
            "connections": s.connections * c.conn_us_per_s / 1e6,
        }
        cpu = sum(split.values())
        by_cpu = math.ceil(cpu / s.target_cpu - 1e-9)
        need = max(by_cpu, memory, 1)
        if need <= n:
            break
        n = need
    redis = (pubs * c.redis_publish_us + node_msgs * c.redis_node_us) / 1e6
    hottest = max((b.rate * (c.redis_publish_us + nodes_per_room(b.size, n) * c.redis_node_us) / 1e6
                   for b in s.buckets if b.rooms > 0), default=0.0)
    return Plan(
        publishes_per_s=pubs, deliveries_per_s=deliveries, node_messages_per_s=node_msgs,
        nodes_per_room=node_msgs / pubs if pubs else 0.0, app_cpu_cores=cpu, app_cpu_split=split,
        processes_cpu=by_cpu, processes_memory=memory, processes=n, redis_cpu_cores=redis,
        shards=max(1, math.ceil(redis / s.redis_target_cpu - 1e-9)),
        hottest_room_shard_share=hottest / s.redis_target_cpu,
    )


# the costs from the benchmarks' --json files ------------------------------------------------
def sizes(med: dict[str, Any], key: str) -> list[int]:
    """The N of every ``key@N`` in ``med``, ascending."""
    return sorted(int(k.split("@")[1]) for k in med if k.startswith(key + "@"))


def from_fanout(data: dict[str, Any], name: str) -> dict[str, Figure]:
    """fanout.py --json: medians.dialogue. deliver_us from the latency phase at the largest N
    (frames at a fixed moderate rate, mostly written alone); conn_kib from the idle phase."""
    med, out = kind_medians(data, "dialogue", name), {}
    ns = [n for n in sizes(med, "lat_server_util") if f"rate@{n}" in med]
    if ns:
        n = ns[-1]
        out["deliver_us"] = Figure(med[f"lat_server_util@{n}"] * 1e6 / (med[f"rate@{n}"] * n),
                                   f"{name}: lat_server_util@{n} / (rate@{n} * {n})")
    if "rss_kib_per_conn" in med:
        out["conn_kib"] = Figure(med["rss_kib_per_conn"], f"{name}: rss_kib_per_conn (one room)")
    return out


def kind_medians(data: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    try:
        med: dict[str, Any] = data["medians"][kind]
    except KeyError:
        raise SystemExit(f"{name}: no medians for the kind {kind!r} in it") from None
    return med


@dataclass(frozen=True)
class Phase:
    """One measured phase of a two-node cluster.py run, per second: CPU in cores."""

    pubs: float
    d_a: float  # deliveries on node A (the publisher's) and node B
    d_b: float
    util_a: float | None
    util_b: float | None
    util_redis: float | None
    nodes: int  # app nodes subscribed to the room
    keys: str  # how the figures were read, for the source column


def cluster_phase(med: dict[str, Any], args: dict[str, Any], n: int, phase: str = "throughput"
                  ) -> Phase:
    """The throughput phase (the default: 16 publishes in flight, every process busy, so the
    CPU per publish is its marginal cost, as on a loaded deployment), or with
    ``phase="latency"`` the latency phase (``lat_node_a_util@N``, ...: a fixed low rate, where
    fixed costs - heartbeats, timers, a CPU waking from idle - are spread over few publishes:
    the expensive end) if the file has it. With ``--rooms K``
    each node's subscribers are spread over K rooms published to in turn: a publish reaches 1/K."""
    on_a = math.ceil(n * float(args.get("on_node_a", 0.5)))
    rooms = int(args.get("rooms") or 1)
    # the publisher is a member on node A: A is subscribed, B only if it holds subscribers
    nodes = int(med.get(f"subscriber_nodes@{n}", 2 if on_a < n else 1))
    if phase == "latency" and f"lat_node_a_util@{n}" in med:
        pubs = med[f"rate@{n}"]
        return Phase(pubs, pubs * on_a / rooms, pubs * (n - on_a) / rooms, med[f"lat_node_a_util@{n}"],
                     med.get(f"lat_node_b_util@{n}"), med.get(f"lat_redis_util@{n}"), nodes,
                     f"lat_*_util@{n} at rate@{n}")
    pubs = med[f"deliv_per_s@{n}"] * rooms / n
    return Phase(pubs, med.get(f"same_deliv_per_s@{n}", 0.0), med.get(f"other_deliv_per_s@{n}", 0.0),
                 med.get(f"node_a_util@{n}"), med.get(f"node_b_util@{n}"), med.get(f"redis_util@{n}"),
                 nodes, f"*_util@{n} at deliv_per_s@{n} / {n}")


def from_cluster(files: Sequence[tuple[str, dict[str, Any]]], deliver_us: float,
                 kind: str = "cluster", phase: str = "throughput") -> dict[str, Figure]:
    """cluster.py --json: medians.<kind> (``cluster``: one Redis; ``shards``: a Redis Cluster,
    redis_util summed over its masters), per file at the smallest N (most publishes). Both nodes
    receive every publish; node A also runs the publish path, so
    publish_us = (node A's CPU - node B's - (A's - B's deliveries) * deliver_us) / publishes;
    Redis CPU per publish = redis_util / publishes, split into the script and a cost per
    subscribed node by a line through runs with different subscribed-node counts (else the
    per-node estimate); receive_us from node B when it delivers at most 10 frames per publish."""
    out: dict[str, Figure] = {}
    points: list[tuple[int, float, str]] = []  # (subscribed nodes, Redis us per publish, source)
    for name, data in files:
        med = kind_medians(data, kind, name)
        ns = sorted(int(k.split("@")[1]) for k in med if k.startswith("deliv_per_s@"))
        if not ns:
            continue
        ph = cluster_phase(med, data.get("args", {}), ns[0], phase)
        if ph.util_a is not None and ph.util_b is not None:
            out.setdefault("publish_us", Figure(
                ((ph.util_a - ph.util_b) * 1e6 - (ph.d_a - ph.d_b) * deliver_us) / ph.pubs,
                f"{name}: (node A - node B - (A's - B's deliveries) x deliver_us) / publishes; {ph.keys}"))
        if ph.util_b is not None and 0 < ph.d_b / ph.pubs <= 10:
            out.setdefault("receive_us", Figure(
                ph.util_b * 1e6 / ph.pubs - ph.d_b / ph.pubs * deliver_us,
                f"{name}: node B per publish - its deliveries x deliver_us; {ph.keys}"))
        if ph.util_redis is not None:
            points.append((ph.nodes, ph.util_redis * 1e6 / ph.pubs, f"{name}: redis {ph.keys}"))
    counts = sorted({p[0] for p in points})
    if len(counts) >= 2:  # the line through the mean per node count at the fewest and the most
        mean = {k: sum(p[1] for p in points if p[0] == k) / sum(1 for p in points if p[0] == k)
                for k in counts}
        lo, hi = counts[0], counts[-1]
        slope = (mean[hi] - mean[lo]) / (hi - lo)
        where = f"fit over {lo} and {hi} subscribed nodes ({'; '.join(p[2] for p in points)})"
        if slope < 0:  # one pub/sub message costs Redis less than the runs' noise
            where += f"; the slope, {slope:.1f} us, is below the runs' noise: taken as 0"
            slope = 0.0
        out["redis_node_us"] = Figure(slope, where)
        out["redis_publish_us"] = Figure(mean[lo] - lo * slope, where)
    elif points:
        k, per_pub = counts[0], sum(p[1] for p in points) / len(points)
        out["redis_publish_us"] = Figure(
            per_pub - k * EST_REDIS_NODE_US[0],
            f"{points[0][2]}: {per_pub:.1f} us with {k} subscribed node(s), less {k} x redis_node_us",
            estimate=True)
    return out


def from_memory(data: dict[str, Any], name: str, deliver_us: float, publish_us: float) -> dict[str, Figure]:
    """shape.py --json: runs.dialogue. conn_kib = kib_per_conn_total (a connection, its personal
    room and a tenth of a group); with --idle, conn_us_per_s = (server CPU - the personal
    publishes' publish and delivery) / connections."""
    run = data["runs"]["dialogue"]
    run = run[0] if isinstance(run, list) else run
    args = data.get("args", {})
    out = {"conn_kib": Figure(run["kib_per_conn_total"], f"{name}: runs.dialogue.kib_per_conn_total")}
    if args.get("idle"):
        conns = float(args["connections"])
        busy = run["server_util"] * 1e6 - run["deliv_per_s"] * (deliver_us + publish_us)
        out["conn_us_per_s"] = Figure(
            busy / conns, f"{name}: (server_util - deliv_per_s * (deliver_us + publish_us)) / "
                          f"{conns:,.0f} connections (shape.py --idle)")
    return out


def load_costs(fanout: Path | None, cluster: Sequence[Path], memory: Path | None,
               cluster_kind: str = "cluster", phase: str = "throughput") -> dict[str, Figure]:
    def read(path: Path) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    figs: dict[str, Figure] = {}
    if fanout is not None:
        figs |= from_fanout(read(fanout), str(fanout))
    figs.setdefault("deliver_us", Figure(EST_DELIVER_US[0], EST_DELIVER_US[1], estimate=True))
    deliver = figs["deliver_us"].value
    given = [(str(p), read(p)) for p in cluster]
    clu = from_cluster(given, deliver, cluster_kind, phase) if given else {}
    for key, fig in from_cluster([(str(DOCS_CLUSTER["source"]), DOCS_CLUSTER)], deliver).items():
        clu.setdefault(key, fig)
    figs |= {k: v for k, v in clu.items() if k not in figs}
    figs.setdefault("receive_us", Figure(EST_RECEIVE_US[0], EST_RECEIVE_US[1], estimate=True))
    figs.setdefault("redis_node_us", Figure(EST_REDIS_NODE_US[0], EST_REDIS_NODE_US[1], estimate=True))
    publish = figs["publish_us"].value
    mem = from_memory(read(memory), str(memory), deliver, publish) if memory is not None else {}
    docs = from_memory(DOCS_MEMORY, str(DOCS_MEMORY["source"]), deliver, publish)
    for key in ("conn_kib", "conn_us_per_s"):  # --memory, then --fanout's rss, then the docs
        figs[key] = mem.get(key) or figs.get(key) or docs[key]
    return figs


def costs_of(figs: dict[str, Figure], overrides: dict[str, float] | None = None) -> Costs:
    c = Costs(**{f.name: figs[f.name].value for f in fields(Costs)})
    return replace(c, **overrides) if overrides else c


# scenarios ------------------------------------------------------------------------------------
def chat(name: str, connections: int, broadcast_share: float) -> dict[str, Any]:
    """The worked examples: a chat. Shares are of connections (a connection may be in several
    rooms); rates per member are publishes per member per second."""
    return {
        "name": name, "connections": connections,
        "rooms": [
            {"size": 2, "share": 0.5, "rate_per_member": 0.02},  # DMs: a message per 50 s each
            {"size": 10, "share": 0.4, "rate_per_member": 0.02},  # small groups
            {"size": 100, "share": 0.1, "rate": 0.5},  # channels: a message every 2 s
            {"size": 10_000, "share": broadcast_share, "rate": 0.05},  # broadcast: one per 20 s
        ],
    }


EXAMPLES = [chat("10k", 10_000, 1.0), chat("100k", 100_000, 0.1), chat("1M", 1_000_000, 0.05)]


def scenario_of(raw: dict[str, Any]) -> tuple[Scenario, dict[str, float]]:
    conns = float(raw["connections"])
    buckets = []
    for r in raw["rooms"]:
        k = int(r["size"])
        rooms = float(r["rooms"]) if "rooms" in r else float(r["share"]) * conns / k
        rate = float(r["rate"]) if "rate" in r else float(r["rate_per_member"]) * k
        buckets.append(Bucket(k, rooms, rate))
    extra = {k: float(raw[k]) for k in ("target_cpu", "node_memory_mib", "redis_target_cpu") if k in raw}
    return Scenario(str(raw.get("name", "scenario")), conns, tuple(buckets), **extra), raw.get("costs", {})


# output ---------------------------------------------------------------------------------------
def costs_table(figs: dict[str, Figure], overridden: set[str]) -> str:
    rows = ["| cost | value | from |", "| --- | --- | --- |"]
    for f in fields(Costs):
        fig = figs[f.name]
        src = ("scenario file" if f.name in overridden
               else ("ESTIMATE: " if fig.estimate else "") + fig.source)
        rows.append(f"| `{f.name}`: {COST_DOCS[f.name]} | {fig.value:.2f} | {src} |")
    return "\n".join(rows)


def plans_table(items: Sequence[tuple[Scenario, Plan]]) -> str:
    def num(x: float) -> str:
        return f"{x:,.0f}" if x >= 100 or x == int(x) else f"{x:,.2f}"

    rows: list[tuple[str, list[str]]] = [
        ("connections", [num(s.connections) for s, _ in items]),
        ("rooms: size x count @ publishes/s per room",
         [", ".join(f"{b.size:,} x {num(b.rooms)} @ {b.rate:g}" for b in s.buckets) for s, _ in items]),
        ("publishes/s", [num(p.publishes_per_s) for _, p in items]),
        ("deliveries/s", [num(p.deliveries_per_s) for _, p in items]),
        ("app nodes subscribed per room (publish-weighted)", [f"{p.nodes_per_room:.2f}" for _, p in items]),
        ("pub/sub messages to app nodes/s", [num(p.node_messages_per_s) for _, p in items]),
        ("app CPU, cores (deliveries / publishes / receives / connections)",
         [f"{p.app_cpu_cores:.2f} ({' / '.join(f'{v:.2f}' for v in p.app_cpu_split.values())})"
          for _, p in items]),
        ("app processes: CPU-bound / memory-bound", [f"{p.processes_cpu} / {p.processes_memory}"
                                                     for _, p in items]),
        ("**app processes needed**", [f"**{p.processes}**" for _, p in items]),
        ("Redis CPU, cores", [f"{p.redis_cpu_cores:.2f}" for _, p in items]),
        ("**Redis shards needed**", [f"**{p.shards}**" for _, p in items]),
        ("busiest room, share of a shard's budget", [f"{p.hottest_room_shard_share:.2%}" for _, p in items]),
    ]
    head = "| | " + " | ".join(s.name for s, _ in items) + " |"
    sep = "| --- |" + " --- |" * len(items)
    return "\n".join([head, sep, *(f"| {label} | " + " | ".join(vals) + " |" for label, vals in rows)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--fanout", type=Path, help="fanout.py --json output")
    p.add_argument("--cluster", type=Path, action="append", default=[],
                   help="cluster.py --json output (repeatable: runs with different subscriber layouts)")
    p.add_argument("--cluster-kind", choices=("cluster", "shards"), default="cluster",
                   help="which two-node run of --cluster: one Redis, or the Redis Cluster")
    p.add_argument("--phase", choices=("throughput", "latency"), default="throughput",
                   help="the --cluster phase the per-publish costs come from (see cluster_phase)")
    p.add_argument("--memory", type=Path, help="shape.py --json output (best: --idle N)")
    p.add_argument("--scenario", type=Path, help="a JSON scenario (or a list); default: the worked examples")
    p.add_argument("--json", type=Path, help="write the costs, their sources and the plans here")
    a = p.parse_args(argv)
    figs = load_costs(a.fanout, a.cluster, a.memory, a.cluster_kind, a.phase)
    raws = EXAMPLES if a.scenario is None else json.loads(a.scenario.read_text())
    raws = raws if isinstance(raws, list) else [raws]
    items, overridden, targets = [], set(), set()
    for raw in raws:
        s, over = scenario_of(raw)
        overridden |= set(over)
        items.append((s, plan(s, costs_of(figs, over))))
        targets.add((s.target_cpu, s.node_memory_mib, s.redis_target_cpu))
    print(costs_table(figs, overridden) + "\n")
    for cpu, mem, rcpu in sorted(targets):
        print(f"targets: app process {cpu:.0%} of a core, {mem:,.0f} MiB for connections; "
              f"Redis shard {rcpu:.0%} of its core")
    print("\n" + plans_table(items))
    if a.json is not None:
        out = {"costs": {k: asdict(v) for k, v in figs.items()},
               "scenarios": [{"scenario": asdict(s), "plan": asdict(pl)} for s, pl in items]}
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
