"""The Redis broker's subscriber: one pub/sub connection per node, never silent.

It reads the cluster's control channel, this node's own channel (frames for
users connected here) and the channels of the rooms this node has members
in with a ``get_message(timeout=...)`` loop (which also sends the health
pings ``listen()`` never sends), under a supervising loop that
reconnects with backoff when the connection or Redis goes away. It tracks the
last seq delivered per room: a gap, or a (re)subscription after the
connection came back, is repaired from the room's stream (and from the store,
for events that already left the stream) before newer events are delivered,
so the sink sees every event once, in seq order. After a
resubscription it also checks the room's epoch: if Redis lost the room (a
restart without persistence to restore it from) the room's members on this
node are told to reconnect (see ``RedisBroker``), as their positions are void.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..core.metrics import SubscriberStats
from ..core.types import EventMessage, Position
from .base import EventSink
from .redis_scripts import RoomKeys, unpack

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("dialogue_fastapi")


@dataclass(frozen=True, slots=True)
class SubscriberChannels:
    """The cluster-wide control channel, this node's own channel, and where their frames go."""

    control: str
    node: str
    on_frame: Callable[[bytes, bool], Awaitable[None]]  # (payload, from the node channel)


class RoomSource(Protocol):
    """What the subscriber reads from the broker to repair gaps and notice lost rooms."""

    async def range(self, keys: RoomKeys, after: int, upto: int | None) -> list[EventMessage]: ...

    async def position(self, room: str) -> Position: ...

    async def stored(self, room: str, after: int, before: int) -> list[EventMessage]: ...

    async def raise_to(self, room: str, position: Position) -> None: ...

    async def lost(self, room: str) -> None: ...


class RedisSubscriber:
    """Delivers subscribed rooms' events in order and control frames, reconnecting by itself."""

    def __init__(
        self, client: Redis, channels: SubscriberChannels, on_event: EventSink,
        rooms: RoomSource, poll: float,
    ) -> None:
        self._client, self._control = client, channels.control.encode()
        self._node = channels.node.encode()
        self._on_event, self._on_frame, self._source = on_event, channels.on_frame, rooms
        self._poll = poll
        self._rooms: dict[str, RoomKeys] = {}
        self._channels: dict[bytes, str] = {}
        self._last: dict[str, int] = {}
        self._epochs: dict[str, str | None] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.listening = False
        self._connected_once = False
        self.stats = SubscriberStats()  # reconnects and gap repairs, read at scrape time

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="dialogue-redis-subscriber")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping = True
        while task is not None and not task.done():
            task.cancel()  # redis-py may swallow one arriving mid-handshake: the flag ends the loop
            await asyncio.wait([task], timeout=self._poll + 0.5)
        self._rooms.clear()
        self._channels.clear()
        self._last.clear()
        self._epochs.clear()

    def reset(self, room: str) -> None:
        """The room's seq starts again (it was dropped): deliver from seq 1, any epoch."""
        if room in self._last:
            self._last[room] = 0
            self._epochs[room] = None

    def subscribed(self, room: str) -> bool:
        return room in self._rooms

    async def subscribe(self, room: str, keys: RoomKeys, position: Position) -> None:
        """Deliver the room's events after ``position`` (read before subscribing)."""
        if room in self._rooms:
            return
        self._rooms[room], self._last[room] = keys, position.seq
        self._epochs[room] = position.epoch
        self._channels[keys.channel.encode()] = room
        await self._send("subscribe", keys.channel)

    async def unsubscribe(self, room: str) -> None:
        keys = self._rooms.pop(room, None)
        if keys is None:
            return
        self._last.pop(room, None)
        self._epochs.pop(room, None)
        self._channels.pop(keys.channel.encode(), None)
        await self._send("unsubscribe", keys.channel)

    async def _send(self, command: str, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return  # the reconnect loop subscribes every room when it is back
        try:
            await getattr(pubsub, command)(channel)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            logger.warning("redis %s %s failed (%s); the subscriber will retry", command, channel, exc)

    async def _supervise(self) -> None:
        delay = 0.1
        while not self._stopping:
            self._connected_once = False
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._connected_once:
                    delay = 0.1
                logger.error("redis subscriber is down (%s: %s); reconnecting in about %.1fs",
                             type(exc).__name__, exc, delay)
            self.listening = False
            self.stats.reconnects += 1
            if self._stopping:
                break
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

    async def _listen(self) -> None:
        pubsub: Any = self._client.pubsub()
        try:
            await pubsub.subscribe(self._control.decode(), self._node.decode())
            self._pubsub = pubsub
            channels = [k.channel for k in self._rooms.values()]
            if channels:
                await pubsub.subscribe(*channels)
            while not self._stopping:
                message = await pubsub.get_message(timeout=self._poll)
                if message is not None:
                    await self._handle(message)
        finally:
            self._pubsub = None
            self.listening = False
            with contextlib.suppress(Exception):  # the connection may be gone already
                await pubsub.aclose()

    async def _handle(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        if channel == self._control or channel == self._node:
            if kind == "subscribe" and channel == self._control:
                self.listening = self._connected_once = True
                logger.info("redis subscriber is listening")
            elif kind == "message":
                await self._on_frame(message["data"], channel == self._node)
            return
        room = self._channels.get(channel)
        if room is None:
            return
        if kind == "subscribe":  # (re)subscribed: deliver what was missed meanwhile
            await self._resume(room)
            await self._catch_up(room, None)
        elif kind == "message":
            live = unpack(message["data"])
            last = self._last.get(room)
            if last is not None and live.seq > last + 1:
                await self._catch_up(room, live.seq - 1)
            self._deliver(room, live)

    async def _resume(self, room: str) -> None:
        """After (re)subscribing: has Redis lost the room (new epoch) or gone back in seq?"""
        last, known = self._last.get(room), self._epochs.get(room)
        if last is None:
            return
        position = await self._source.position(room)  # restores from the store if Redis lost it
        if known is None:
            self._epochs[room] = position.epoch
        elif position.epoch != known:
            logger.error("room %s: redis lost its history (epoch %s -> %s); its members here "
                         "are told to reconnect and resync", room, known, position.epoch,
                         extra={"room": room, "seq": last})
            self._epochs[room], self._last[room] = position.epoch, 0
            await self._source.lost(room)
        elif position.seq < last:  # the store it was restored from lagged behind what we saw
            await self._source.raise_to(room, Position(last, known))

    async def _catch_up(self, room: str, upto: int | None) -> None:
        last, keys = self._last.get(room), self._rooms.get(room)
        if last is None or keys is None:
            return
        missed = await self._source.range(keys, last, upto)
        first = missed[0].seq if missed else (None if upto is None else upto + 1)
        stored: list[EventMessage] = []
        if first is not None and first > last + 1:  # some left the stream: the store has them
            stored = await self._source.stored(room, last, first)
            for event in stored:
                self._deliver(room, event)
            if self._last[room] < first - 1:
                logger.warning("room %s: events %d..%d left the redis window before this node "
                               "got them, and no store has them", room, self._last[room] + 1,
                               first - 1, extra={"room": room, "seq": self._last[room] + 1})
        for event in missed:
            self._deliver(room, event)
        if missed or stored:
            self.stats.gap_repairs += 1
            self.stats.repaired_events += len(missed) + len(stored)

    def _deliver(self, room: str, message: EventMessage) -> None:
        last = self._last.get(room)
        if last is None or message.seq <= last:
            return
        self._last[room] = message.seq
        self._on_event(message)
