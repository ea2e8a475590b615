"""Client side of the benchmark: raw ``websockets`` asyncio connections, orjson decoding."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import orjson
from _rawreader import close_raw, keep_alive, take_over
from _tally import Tally
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOM = "bench"
EVENT = "message"
TEXT = "the quick brown fox jumps over the lazy dog, a chat-sized payload"
CONNECT_CONCURRENCY = 64


async def open_connection(url: str) -> ClientConnection:
    """Connect without compression or client pings and wait for the server's hello."""
    ws = await connect(url, compression=None, ping_interval=None, open_timeout=20, close_timeout=2)
    hello = orjson.loads(await ws.recv(decode=False))
    if hello.get("op") != "hello":
        await ws.close()
        raise RuntimeError(f"expected hello, got {hello!r}")
    return ws


async def send_json(ws: ClientConnection, obj: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(obj), text=True)


async def join(ws: ClientConnection, cmd_id: int = 1, room: str = ROOM) -> None:
    """Join the benchmark room (or ``room``); frames before the reply (e.g. presence) are skipped."""
    await send_json(ws, {"op": "join", "id": cmd_id, "room": room})
    while True:
        msg = orjson.loads(await ws.recv(decode=False))
        if msg.get("id") == cmd_id:
            if not msg.get("ok"):
                raise RuntimeError(f"join refused: {msg.get('error')!r}")
            return


async def open_joined(url: str, count: int, rooms: Sequence[str] = (ROOM,)) -> list[ClientConnection]:
    """Open ``count`` connections that joined the room (each of ``rooms``), a bounded number at a time."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    conns: list[ClientConnection] = []

    async def one() -> None:
        async with gate:
            ws = await open_connection(url)
            conns.append(ws)
            for cmd_id, room in enumerate(rooms, 1):
                await join(ws, cmd_id, room)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(count):
                group.create_task(one())
    except BaseException:
        await close_all(conns)
        raise
    return conns


async def close_all(conns: Iterable[ClientConnection], timeout: float = 10.0) -> None:
    conns = list(conns)
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    except TimeoutError:
        for ws in conns:
            ws.transport.abort()


async def consume(ws: ClientConnection, tally: Tally) -> None:
    """Count ``event`` frames; record publish-to-delivery latency when asked to."""
    loads, now, recv = orjson.loads, time.time_ns, ws.recv
    try:
        while True:
            msg = loads(await recv(decode=False))
            if msg.get("op") != "event":
                continue
            tally.delivered += 1
            if tally.record_from is not None:
                data = msg["data"]
                if data["i"] >= tally.record_from:
                    tally.latencies.append(now() - data["t"])
    except ConnectionClosed as exc:
        tally.closes[exc.rcvd.code if exc.rcvd else None] += 1


@asynccontextmanager
async def subscribers(url: str, count: int, raw: bool, room: str = ROOM) -> AsyncIterator[Tally]:
    """``count`` connections that joined ``room``, counting what they receive.

    ``raw``: read frames with ``_rawreader`` after the join; else a task per
    connection loops on ``websockets``' ``recv``.
    """
    tally = Tally()
    conns = await open_joined(url, count, (room,))
    if raw:
        readers = [take_over(ws, tally) for ws in conns]
        pinger = asyncio.create_task(keep_alive(readers))
        try:
            yield tally
        finally:
            pinger.cancel()
            for reader in readers:
                close_raw(reader)
        return
    tasks = [asyncio.create_task(consume(ws, tally)) for ws in conns]
    try:
        yield tally
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_all(conns)


class Publisher:
    """One joined connection that publishes; a reader task counts replies and frees the window.

    ``rooms``: publish ``i`` goes to ``rooms[i % len(rooms)]`` (the connection joined them all).
    """

    def __init__(self, ws: ClientConnection, rooms: Sequence[str] = (ROOM,)) -> None:
        self.ws = ws
        self.rooms = tuple(rooms)
        self.ids = itertools.count(100)
        self.sent = 0
        self.acked = 0
        self.errors: Counter[str] = Counter()
        self.window = asyncio.Semaphore(1 << 30)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        loads, recv = orjson.loads, self.ws.recv
        with suppress(ConnectionClosed):
            while True:
                msg = loads(await recv(decode=False))
                if "id" not in msg:
                    continue  # its own copy of the event
                self.acked += 1
                if not msg.get("ok"):
                    self.errors[str(msg.get("error", {}).get("code"))] += 1
                self.window.release()

    async def publish(self, i: int) -> None:
        data = {"t": time.time_ns(), "i": i, "text": TEXT}
        room = self.rooms[i % len(self.rooms)]
        cmd = {"op": "publish", "id": next(self.ids), "room": room, "event": EVENT, "data": data}
        await send_json(self.ws, cmd)
        self.sent += 1

    async def aclose(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await close_all([self.ws])


@asynccontextmanager
async def publisher(url: str, rooms: Sequence[str] = (ROOM,)) -> AsyncIterator[Publisher]:
    (ws,) = await open_joined(url, 1, rooms)
    pub = Publisher(ws, rooms)
    try:
        yield pub
    finally:
        await pub.aclose()


class Publishers:
    """Several publishers read as one (the phases' view): publishes go round-robin, one window.

    A server handles one connection's commands in order, so with a broker that
    waits for a network round trip per publish one connection has at most one
    publish in progress whatever the window; several connections do not.
    """

    def __init__(self, parts: list[Publisher]) -> None:
        self.parts = parts
        self._next = itertools.cycle(parts)

    @property
    def window(self) -> asyncio.Semaphore:
        return self.parts[0].window

    @window.setter
    def window(self, window: asyncio.Semaphore) -> None:
        for part in self.parts:
            part.window = window

    @property
    def sent(self) -> int:
        return sum(part.sent for part in self.parts)

    @property
    def acked(self) -> int:
        return sum(part.acked for part in self.parts)

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for part in self.parts:
            total.update(part.errors)
        return total

    async def publish(self, i: int) -> None:
        await next(self._next).publish(i)


async def mute(ws: ClientConnection, cmd_id: int = 2, room: str = ROOM) -> None:
    """Unsubscribe a joined connection from the benchmark's event (dialogue's ``unsubscribe``)."""
    await send_json(ws, {"op": "unsubscribe", "id": cmd_id, "room": room, "events": [EVENT]})
    while True:
        msg = orjson.loads(await ws.recv(decode=False))
        if msg.get("id") == cmd_id:
            if not msg.get("ok"):
                raise RuntimeError(f"unsubscribe refused: {msg.get('error')!r}")
            return


@asynccontextmanager
async def publishers(url: str, count: int, rooms: Sequence[str] = (ROOM,)) -> AsyncIterator[Publishers]:
    """``count`` publishing connections that joined ``rooms`` and do not receive the events they publish.

    (A single ``publisher`` does, as in ``fanout.py``; with many, their copies
    would be uncounted deliveries.) Dialogue only: the ceiling has no ``unsubscribe``.
    """
    conns = await open_joined(url, count, rooms)

    async def mute_all(ws: ClientConnection) -> None:  # one recv() at a time per connection
        for cmd_id, room in enumerate(rooms, len(rooms) + 1):  # ids after the joins'
            await mute(ws, cmd_id, room)

    try:
        await asyncio.gather(*(mute_all(ws) for ws in conns))
    except BaseException:
        await close_all(conns)
        raise
    parts = [Publisher(ws, rooms) for ws in conns]
    try:
        yield Publishers(parts)
    finally:
        await asyncio.gather(*(part.aclose() for part in parts))
