"""The Redis broker's subscriber: one pub/sub connection per node, never silent.

It reads the control channel and the channels of the rooms this node has
members in with a ``get_message(timeout=...)`` loop (which also sends the
health pings ``listen()`` never sends), under a supervising loop that
reconnects with backoff when the connection or Redis goes away. It tracks the
last seq delivered per room: a gap, or a (re)subscription after the
connection came back, is repaired from the room's stream before newer events
are delivered, so the sink sees every event once, in seq order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..types import EventMessage
from .base import EventSink
from .redis_scripts import RoomKeys, unpack

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("dialogue_fastapi")
RangeReader = Callable[[RoomKeys, int, int | None], Awaitable[list[EventMessage]]]


class RedisSubscriber:
    """Delivers subscribed rooms' events in order and control frames, reconnecting by itself."""

    def __init__(
        self, client: Redis, control_channel: str, on_event: EventSink,
        on_control: Callable[[bytes], Awaitable[None]], read_range: RangeReader, poll: float,
    ) -> None:
        self._client, self._control = client, control_channel.encode()
        self._on_event, self._on_control, self._range = on_event, on_control, read_range
        self._poll = poll
        self._rooms: dict[str, RoomKeys] = {}
        self._channels: dict[bytes, str] = {}
        self._last: dict[str, int] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.listening = False
        self._connected_once = False

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

    def reset(self, room: str) -> None:
        """The room's seq starts again (it was dropped): deliver from seq 1."""
        if room in self._last:
            self._last[room] = 0

    def subscribed(self, room: str) -> bool:
        return room in self._rooms

    async def subscribe(self, room: str, keys: RoomKeys, last: int) -> None:
        """Deliver the room's events after ``last`` (the room's seq read before subscribing)."""
        if room in self._rooms:
            return
        self._rooms[room], self._last[room] = keys, last
        self._channels[keys.channel.encode()] = room
        await self._send("subscribe", keys.channel)

    async def unsubscribe(self, room: str) -> None:
        keys = self._rooms.pop(room, None)
        if keys is None:
            return
        self._last.pop(room, None)
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
            if self._stopping:
                break
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

    async def _listen(self) -> None:
        pubsub: Any = self._client.pubsub()
        try:
            await pubsub.subscribe(self._control.decode())
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
        if channel == self._control:
            if kind == "subscribe":
                self.listening = self._connected_once = True
                logger.info("redis subscriber is listening")
            elif kind == "message":
                await self._on_control(message["data"])
            return
        room = self._channels.get(channel)
        if room is None:
            return
        if kind == "subscribe":  # (re)subscribed: deliver what was missed meanwhile
            await self._catch_up(room, None)
        elif kind == "message":
            live = unpack(message["data"])
            last = self._last.get(room)
            if last is not None and live.seq > last + 1:
                await self._catch_up(room, live.seq - 1)
            self._deliver(room, live)

    async def _catch_up(self, room: str, upto: int | None) -> None:
        last, keys = self._last.get(room), self._rooms.get(room)
        if last is None or keys is None:
            return
        missed = await self._range(keys, last, upto)
        if missed and missed[0].seq > last + 1:
            logger.warning("room %s: events %d..%d left the redis window before this node got them",
                           room, last + 1, missed[0].seq - 1)
        for event in missed:
            self._deliver(room, event)

    def _deliver(self, room: str, message: EventMessage) -> None:
        last = self._last.get(room)
        if last is None or message.seq <= last:
            return
        self._last[room] = message.seq
        self._on_event(message)
