"""The measured phases: throughput, latency at a fixed rate, RSS per idle connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from _client import Publisher, Publishers, close_all, open_joined
from _servers import CpuMeter, ServerProcess
from _tally import Tallies, Tally

POLL = 0.001
# Deliveries per publish: an int, or one per room when publish i goes to room i % len (cluster.py --rooms)
Fanout = int | Sequence[int]


def expected(n: Fanout, published: int) -> int:
    """Deliveries that ``published`` publishes (numbered from 0) make."""
    if isinstance(n, int):
        return published * n
    return published // len(n) * sum(n) + sum(n[: published % len(n)])


def mean_fanout(n: Fanout) -> float:
    return n if isinstance(n, int) else sum(n) / len(n)


@dataclass
class Throughput:
    delivered_per_s: float
    published: int
    seconds: float
    server_cpu_us_per_msg: float
    server_util: float  # server CPU seconds / wall seconds (1.0 = its core is full)
    client_util: float  # the same for the load generator's process
    complete: bool
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class Latency:
    rate: float  # offered publishes/s
    achieved_rate: float
    p50_ms: float
    p99_ms: float
    samples: int
    errors: dict[str, int]
    saturated: bool
    server_util: float = 0.0  # during the latency phase: keep both well below 1.0
    client_util: float = 0.0


async def _wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL)
    return True


async def throughput(
    server: CpuMeter,
    pub: Publisher | Publishers,
    tally: Tally | Tallies,
    n: Fanout,
    duration: float,
    window: int,
    max_lag: int,
    timeout: float,
) -> Throughput:
    """Publish as fast as acks come back (``window`` in flight) for ``duration`` seconds.

    The publisher also holds back while subscribers are on average more than
    ``max_lag`` events behind: the acks only say the server queued the event,
    and without this a load generator slower than the server would overflow
    the server's per-connection queues (which measures the queue limit, not
    fan-out).
    """
    tally.reset()
    pub.window = asyncio.Semaphore(window)
    start_sent, lag_limit = pub.sent, max_lag * mean_fanout(n)
    drained = _Drain(pub, tally, n)
    cpu0, ccpu0, t0 = server.cpu_seconds(), time.process_time(), time.perf_counter()
    stop = t0 + duration
    async with asyncio.timeout(duration + timeout):  # e.g. a server that stopped acking
        while time.perf_counter() < stop:
            await pub.window.acquire()
            behind = expected(n, pub.sent - start_sent) - tally.delivered
            while behind > lag_limit and time.perf_counter() < stop:
                await asyncio.sleep(POLL)
                behind = expected(n, pub.sent - start_sent) - tally.delivered
            await pub.publish(pub.sent - start_sent)
    published = pub.sent - start_sent
    complete = await _wait_for(drained, timeout) and not tally.closes and not drained.failed
    t1, cpu1, ccpu1 = time.perf_counter(), server.cpu_seconds(), time.process_time()
    wall = t1 - t0
    return Throughput(
        delivered_per_s=tally.delivered / wall,
        published=published,
        seconds=wall,
        server_cpu_us_per_msg=(cpu1 - cpu0) / max(tally.delivered, 1) * 1e6,
        server_util=(cpu1 - cpu0) / wall,
        client_util=(ccpu1 - ccpu0) / wall,
        complete=complete,
        errors=drained.errors() | {f"close {code}": k for code, k in tally.closes.items()},
    )


class _Drain:
    """True once every publish since creation is acked and every accepted one delivered."""

    def __init__(self, pub: Publisher | Publishers, tally: Tally | Tallies, n: Fanout) -> None:
        self.pub, self.tally, self.n = pub, tally, n
        self.sent0, self.acked0, self.errors0 = pub.sent, pub.acked, dict(pub.errors)

    @property
    def failed(self) -> int:
        return sum(self.errors().values())

    def errors(self) -> dict[str, int]:
        diff = {k: v - self.errors0.get(k, 0) for k, v in self.pub.errors.items()}
        return {k: v for k, v in diff.items() if v}

    def __call__(self) -> bool:
        published = self.pub.sent - self.sent0
        if self.tally.closes:
            return True
        if self.pub.acked - self.acked0 < published:
            return False
        return self.tally.delivered >= expected(self.n, published - self.failed)


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return float(sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))])


async def latency(
    server: CpuMeter,
    pub: Publisher | Publishers,
    tally: Tally | Tallies,
    n: Fanout,
    rate: float,
    duration: float,
    warmup: float,
    timeout: float,
) -> Latency:
    """Publish open-loop at ``rate``/s; latencies of events after ``warmup`` s are recorded."""
    first_recorded = int(rate * warmup)
    total = first_recorded + int(rate * duration)
    tally.reset(record_from=first_recorded)
    start_sent = pub.sent
    drained = _Drain(pub, tally, n)
    cpu0, ccpu0, t0 = server.cpu_seconds(), time.process_time(), time.perf_counter()
    async with asyncio.timeout(warmup + duration + timeout):
        for i in range(total):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await pub.publish(i)
    t_sent = time.perf_counter()
    achieved = total / (t_sent - t0) if t_sent > t0 else float("inf")
    done = await _wait_for(drained, timeout)
    t1, cpu1, ccpu1 = time.perf_counter(), server.cpu_seconds(), time.process_time()
    drain = t1 - t_sent
    values = sorted(tally.latencies)
    return Latency(
        rate=rate,
        achieved_rate=achieved,
        p50_ms=percentile(values, 0.50) / 1e6,
        p99_ms=percentile(values, 0.99) / 1e6,
        samples=len(values),
        # behind schedule, a backlog left at the end, or events lost: the rate is too high
        errors=drained.errors(),
        saturated=not done
        or bool(tally.closes)
        or drained.failed > 0
        or achieved < 0.95 * rate
        or drain > 0.5
        or pub.sent - start_sent != total,
        server_util=(cpu1 - cpu0) / (t1 - t0),
        client_util=(ccpu1 - ccpu0) / (t1 - t0),
    )


@dataclass
class IdleMemory:
    connections: int
    rss_before_kib: int
    rss_after_kib: int

    @property
    def kib_per_conn(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.connections


async def idle_rss(server: ServerProcess, count: int, settle: float = 1.0) -> IdleMemory:
    """Server RSS before and after ``count`` connections that joined the room and stay idle."""
    await asyncio.sleep(settle)
    before = server.rss_kib()
    conns = await open_joined(server.url, count)
    try:
        await asyncio.sleep(settle)
        after = server.rss_kib()
    finally:
        await close_all(conns, timeout=30)
    return IdleMemory(count, before, after)
