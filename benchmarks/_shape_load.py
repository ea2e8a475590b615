"""The workload of ``shape.py``: slots of users, staged connect, the driven phase, churn, losses.

A *slot* is one user (``u<index>``) with its personal room ``user:u<index>`` and its group
``group:<index // group_size>``; it holds one connection at a time. Churn closes a slot's
connection and opens a new one for the same user, which joins the same two rooms.

Loss accounting: the slots churned during the run (the *victims*, drawn at the start) never
publish and are not judged; every other slot is *stable* (one connection for the whole run)
and must receive every measured event of its group whose publish was acked ``ok`` and every
measured personal event the trigger route accepted. lost = expected - received over the
stable slots, after a drain.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from _shape_client import PAYLOAD_TEXT, DialogueConn, Http, RawConn, Stats, open_conn

TICK = 0.005  # s between the driver's turns
TRIGGER_EVERY = 0.02  # s between two POST /_bench/trigger (each carries what fell due)
PING_EVERY = 20.0  # s: dialogue wants a frame at least every heartbeat (25 s)


@dataclass
class Shape:
    connections: int
    group_size: int
    group_rate: float  # group publishes/s, all members together
    personal_rate: float  # application publishes/s into personal rooms
    churn_rate: float  # connections replaced per second
    concurrency: int  # connection attempts (and joins) in flight while connecting

    @property
    def groups(self) -> int:
        return math.ceil(self.connections / self.group_size)


class Slot:
    __slots__ = ("busy", "conn", "group", "index", "port", "user")

    def __init__(self, index: int, group_size: int, port: int) -> None:
        self.index, self.group, self.port = index, index // group_size, port
        self.user = f"u{index}"
        self.conn: RawConn | None = None
        self.busy = False

    @property
    def personal(self) -> str:
        return f"user:{self.user}"

    @property
    def group_room(self) -> str:
        return f"group:{self.group}"


class Workload:
    def __init__(self, shape: Shape, cls: type[RawConn], ports: list[int], https: list[Http],
                 victims: int, seed: int) -> None:
        self.shape, self.cls, self.https = shape, cls, https
        self.rng = random.Random(seed)
        self.stats = Stats(shape.groups, shape.connections)
        self.slots = [Slot(i, shape.group_size, ports[i % len(ports)]) for i in range(shape.connections)]
        chosen = self.rng.sample(range(shape.connections), min(victims, shape.connections // 2))
        self.victims = [self.slots[i] for i in chosen]
        victim_set = set(chosen)
        self.stable = [s for s in self.slots if s.index not in victim_set]
        self._victim_cycle = itertools.cycle(self.victims) if self.victims else None
        self.event_ids = itertools.count()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.churn_ms: list[float] = []
        self.churn_failures = 0
        self.churned = 0
        self.skipped_publishes = 0
        self.trigger_errors = 0
        self.trigger_error_kinds: Counter[str] = Counter()
        self.trigger_requests = 0
        self._http_next = itertools.cycle(https)

    # connecting ------------------------------------------------------------------------
    async def _bounded(self, work: Any, slots: list[Slot]) -> float:
        gate = asyncio.Semaphore(self.shape.concurrency)

        async def one(slot: Slot) -> None:
            async with gate:
                await work(slot)

        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for slot in slots:
                group.create_task(one(slot))
        return time.perf_counter() - t0

    async def open_all(self) -> float:
        """Every slot connects (hello / namespace connect); seconds taken."""

        async def work(slot: Slot) -> None:
            slot.conn = await open_conn(self.cls, self.stats, slot.user, slot.port)

        return await self._bounded(work, self.slots)

    async def join_all(self, which: str) -> float:
        """Every slot joins its personal room (``which="personal"``) or its group; seconds taken."""

        async def work(slot: Slot) -> None:
            assert slot.conn is not None
            await slot.conn.join(slot.personal if which == "personal" else slot.group_room)

        return await self._bounded(work, self.slots)

    async def keepalive(self) -> None:
        """dialogue's client heartbeat: every connection sends a frame at least every 20 s,
        spread evenly (a slot is visited every ``PING_EVERY`` s; one that sent nothing for
        half of that sends ``{"op": "ping"}``). Socket.IO's server pings; nothing to do."""
        if not issubclass(self.cls, DialogueConn):
            return
        step, pos, n = 0.25, 0, len(self.slots)
        per_step = max(1, math.ceil(n * step / PING_EVERY))
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            for _ in range(per_step):
                conn = self.slots[pos].conn
                pos = (pos + 1) % n
                if conn is not None and not conn.lost and now - conn.last_sent > PING_EVERY / 2:
                    conn.ping()

    # the driven phase ------------------------------------------------------------------
    def _data(self, kind: str, measured: bool) -> dict[str, Any]:
        return {"t": time.time_ns(), "i": next(self.event_ids), "k": kind, "m": int(measured),
                "text": PAYLOAD_TEXT}

    def publish_group(self, measured: bool) -> None:
        slot = self.rng.choice(self.stable)
        conn = slot.conn
        if conn is None or conn.lost:
            self.skipped_publishes += 1
            return
        conn.publish(slot.group_room, self._data("g", measured), slot.group if measured else -1)

    async def trigger(self, users: list[int], measured: bool) -> None:
        events = [{"room": self.slots[u].personal, "data": self._data("p", measured)} for u in users]
        self.trigger_requests += 1
        try:
            reply = await next(self._http_next).json("POST", "/_bench/trigger", {"events": events})
        except Exception as exc:
            self.trigger_errors += len(users)
            self.trigger_error_kinds[type(exc).__name__] += 1
            return
        if reply.get("errors"):
            self.trigger_errors += int(reply["errors"])
            self.trigger_error_kinds[str(reply.get("error", ""))[:80]] += 1
        elif measured:
            for u in users:
                self.stats.personal_expected[u] += 1

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def churn_one(self) -> None:
        if self._victim_cycle is None:
            return
        for _ in range(len(self.victims)):
            slot = next(self._victim_cycle)
            if not slot.busy:
                slot.busy = True
                self.churned += 1
                self.spawn(self._replace(slot))
                return

    async def _replace(self, slot: Slot) -> None:
        try:
            if slot.conn is not None:
                slot.conn.close()
            t0 = time.perf_counter()
            conn = await open_conn(self.cls, self.stats, slot.user, slot.port)
            await asyncio.gather(conn.join(slot.personal), conn.join(slot.group_room))
            slot.conn = conn
            self.churn_ms.append((time.perf_counter() - t0) * 1000)
        except Exception:
            self.churn_failures += 1
        finally:
            slot.busy = False

    async def drive(self, seconds: float, measured: bool, group_rate: float | None = None) -> int:
        """Offer the shape's load for ``seconds``: group publishes, personal triggers, churn;
        each on its schedule from the start (a late turn catches up). Returns publishes sent."""
        shape = self.shape
        g_rate = shape.group_rate if group_rate is None else group_rate
        loop = asyncio.get_running_loop()
        start = loop.time()
        g_sent = p_sent = churned = 0
        next_trigger = 0.0
        trig: asyncio.Task[None] | None = None
        n = len(self.slots)
        while True:
            el = min(loop.time() - start, seconds)
            for _ in range(int(el * g_rate) - g_sent):
                self.publish_group(measured)
                g_sent += 1
            for _ in range(int(el * shape.churn_rate) - churned):
                self.churn_one()
                churned += 1
            if (trig is None or trig.done()) and (el >= next_trigger or el >= seconds):
                due = int(el * shape.personal_rate) - p_sent
                if due > 0:
                    users = [self.rng.randrange(n) for _ in range(due)]
                    trig = asyncio.create_task(self.trigger(users, measured))
                    self.tasks.add(trig)
                    trig.add_done_callback(self.tasks.discard)
                    p_sent += due
                next_trigger = el + TRIGGER_EVERY
            if el >= seconds:
                break
            await asyncio.sleep(TICK)
        return g_sent + p_sent

    async def settle(self, timeout: float = 60.0) -> None:
        """Wait for the churn replacements and triggers in progress."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)

    async def drain(self, timeout: float = 15.0, quiet: float = 0.5) -> float:
        """After the phase: wait for the replies and the deliveries to stop; seconds waited."""
        t0 = time.perf_counter()
        await self.settle(timeout)
        last, since = -1, time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            waiting = any(s.conn is not None and s.conn.pubs and not s.conn.lost for s in self.stable)
            if self.stats.measured != last:
                last, since = self.stats.measured, time.perf_counter()
            elif not waiting and time.perf_counter() - since >= quiet:
                break
            await asyncio.sleep(0.05)
        return time.perf_counter() - t0

    def losses(self) -> dict[str, int]:
        """Measured events the stable slots should have received and did not (and extras)."""
        expected = received = lost = extra = 0
        gexp, pexp = self.stats.group_expected, self.stats.personal_expected
        for slot in self.stable:
            want = gexp[slot.group] + pexp[slot.index]
            got = slot.conn.received if slot.conn is not None else 0
            expected += want
            received += got
            lost += max(0, want - got)
            extra += max(0, got - want)
        return {"expected": expected, "received": received, "lost": lost, "extra": extra,
                "stable_slots": len(self.stable), "victim_slots": len(self.victims)}

    async def close_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for slot in self.slots:
            if slot.conn is not None:
                slot.conn.close()
        await asyncio.sleep(0.5)
        for slot in self.slots:
            if slot.conn is not None:
                slot.conn.abort()
        for http in self.https:
            await http.aclose()
