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

On a Redis Cluster the same class reads one shard (``Sharded``): sharded
channels (``SSUBSCRIBE``) on the master that owns them, and instead of
reconnecting by itself it tells its owner (``ShardedSubscriber``) when the
connection fails or Redis takes channels away (a slot moved: ``sunsubscribe``),
and its rooms move, with their positions, to the shard that owns them now.
After such a move it also checks that the shard still holds the last event
delivered (same seq, same timestamp): a master that died before its replica
got the latest writes makes the room ``diverged``.
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
class Sharded:
    """How a subscriber of one Redis Cluster shard reports trouble to its owner."""

    #: the connection failed (the owner re-reads the cluster's slots and moves the channels)
    on_down: Callable[[RedisSubscriber], None]
    #: Redis unsubscribed a channel by itself (its slot moved to another shard)
    on_moved: Callable[[RedisSubscriber, bytes], None]


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

    async def diverged(self, room: str, last: int) -> Position: ...


class Subscriber(Protocol):
    """What the broker asks of its subscriber (one connection, or one per cluster shard)."""

    stats: SubscriberStats

    @property
    def listening(self) -> bool: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def subscribed(self, room: str) -> bool: ...

    def reset(self, room: str) -> None: ...

    async def subscribe(self, room: str, keys: RoomKeys, position: Position) -> None: ...

    async def unsubscribe(self, room: str) -> None: ...


class RedisSubscriber:
    """Delivers subscribed rooms' events in order and control frames, reconnecting by itself."""

    def __init__(
        self, client: Redis, channels: SubscriberChannels | None, on_event: EventSink,
        rooms: RoomSource, poll: float, *, sharded: Sharded | None = None,
        stats: SubscriberStats | None = None,
        on_frame: Callable[[bytes, bool], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._on_event, self._source, self._poll = on_event, rooms, poll
        self._on_frame = channels.on_frame if channels is not None else on_frame
        #: the frame channels read here -> whether frames on it are for this node only
        self._frames: dict[bytes, bool] = {} if channels is None else {
            channels.control.encode(): False, channels.node.encode(): True}
        self._sharded = sharded
        self._sub, self._unsub = ("ssubscribe", "sunsubscribe") if sharded else ("subscribe",
                                                                                  "unsubscribe")
        self._rooms: dict[str, RoomKeys] = {}
        self._channels: dict[bytes, str] = {}
        self._last: dict[str, int] = {}
        self._epochs: dict[str, str | None] = {}
        self._ts: dict[str, int] = {}  # sharded: the timestamp of the last event delivered
        self._moved: set[str] = set()  # sharded: rooms that came here from another shard
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.listening = False
        self.down = False  # sharded: the connection failed; the owner moves the channels
        self.name = ""  # sharded: the master read, "host:port"
        self._connected_once = False
        self.stats = stats or SubscriberStats()  # reconnects and gap repairs, read at scrape time

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
        self._ts.clear()

    def reset(self, room: str) -> None:
        """The room's seq starts again (it was dropped): deliver from seq 1, any epoch."""
        if room in self._last:
            self._last[room] = 0
            self._epochs[room] = None

    def subscribed(self, room: str) -> bool:
        return room in self._rooms

    async def subscribe(self, room: str, keys: RoomKeys, position: Position,
                        *, moved: bool = False, ts: int | None = None) -> None:
        """Deliver the room's events after ``position`` (read before subscribing);
        ``moved``: it comes from another shard (check the new one holds what was delivered)."""
        if room in self._rooms:
            return
        self._rooms[room], self._last[room] = keys, position.seq
        self._epochs[room] = position.epoch
        if ts is not None:
            self._ts[room] = ts
        if moved:
            self._moved.add(room)
        self._channels[keys.channel.encode()] = room
        await self._send(self._sub, keys.channel)

    async def unsubscribe(self, room: str) -> None:
        keys = self.detach(room)
        if keys is not None:
            await self._send(self._unsub, keys[0].channel)

    def detach(self, room: str) -> tuple[RoomKeys, Position, int | None] | None:
        """Stop tracking the room here: its keys, what was delivered, and its timestamp."""
        keys = self._rooms.pop(room, None)
        if keys is None:
            return None
        last = self._last.pop(room, 0)
        epoch = self._epochs.pop(room, None)
        self._moved.discard(room)
        self._channels.pop(keys.channel.encode(), None)
        return keys, Position(last, epoch or ""), self._ts.pop(room, None)

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def keys_of(self, room: str) -> RoomKeys | None:
        return self._rooms.get(room)

    async def send_unsubscribe(self, channel: str) -> None:
        """Sharded: the channel moved away from here (its state went with it)."""
        await self._send(self._unsub, channel)

    async def close_client(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()

    def frame_channels(self) -> dict[bytes, bool]:
        return dict(self._frames)

    def add_frames(self, channel: bytes, direct: bool) -> None:
        """Sharded: also read this frame channel (control, or this node's own) when connected."""
        self._frames[channel] = direct

    async def watch(self, channel: bytes, direct: bool) -> None:
        """Sharded: read this frame channel from now on."""
        self._frames[channel] = direct
        await self._send(self._sub, channel.decode())

    def unwatch(self, channel: bytes) -> None:
        self._frames.pop(channel, None)

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
            if self._sharded is not None:  # the owner moves the channels to the slots' owners
                self.down = True
                self._sharded.on_down(self)
                break
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

    async def _listen(self) -> None:
        pubsub: Any = self._client.pubsub()
        subscribe = getattr(pubsub, self._sub)
        try:
            # the first command opens the connection; from then on a room subscribed
            # meanwhile is sent at once, and the rest are read after that (none is lost)
            sharded = self._sharded is not None
            head = self._channel_list()[:1] if sharded else [c.decode() for c in self._frames]
            if head:
                await subscribe(*head)
            self._pubsub = pubsub
            rest = [c for c in self._channel_list() if c not in head]
            if sharded:  # one SSUBSCRIBE per channel: each has its own slot
                for channel in rest:
                    await subscribe(channel)
            elif rest:
                await subscribe(*rest)
            while not self._stopping:
                message = await pubsub.get_message(timeout=self._poll)
                if message is not None:
                    await self._handle(message)
        finally:
            self._pubsub = None
            self.listening = False
            with contextlib.suppress(Exception):  # the connection may be gone already
                await pubsub.aclose()

    def _channel_list(self) -> list[str]:
        return [c.decode() for c in self._frames] + [k.channel for k in self._rooms.values()]

    async def _handle(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        if (kind == "subscribe" or kind == "ssubscribe") and not self.listening:
            self.listening = self._connected_once = True
            logger.info("redis subscriber is listening")
        if channel in self._frames:
            if (kind == "message" or kind == "smessage") and self._on_frame is not None:
                await self._on_frame(message["data"], self._frames[channel])
            elif kind == "sunsubscribe" and self._sharded is not None:
                self._sharded.on_moved(self, channel)
            return
        room = self._channels.get(channel)
        if room is None:
            return
        if kind == "message" or kind == "smessage":
            live = unpack(message["data"])
            last = self._last.get(room)
            if last is not None and live.seq > last + 1:
                await self._catch_up(room, live.seq - 1)
            self._deliver(room, live)
        elif kind == "subscribe" or kind == "ssubscribe":  # deliver what was missed meanwhile
            await self._resume(room)
            await self._catch_up(room, None)
        elif kind == "sunsubscribe" and self._sharded is not None:
            self._sharded.on_moved(self, channel)  # Redis moved the slot: so does the room

    async def _resume(self, room: str) -> None:
        """After (re)subscribing: has Redis lost the room (new epoch) or gone back in seq?"""
        last, known = self._last.get(room), self._epochs.get(room)
        if last is None:
            return
        position = await self._source.position(room)  # restores from the store if Redis lost it
        if room in self._moved:
            self._moved.discard(room)
            if await self._diverged(room, last, position):
                return
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

    async def _diverged(self, room: str, last: int, position: Position) -> bool:
        """Sharded, after a move: does the shard still hold the last event delivered here?
        (A master that died before its replica got its latest writes loses them, and the
        replica may already have given their seqs to other events.)"""
        if position.epoch != self._epochs.get(room):
            return False  # a lost room: the epoch check handles it
        keys, ts = self._rooms.get(room), self._ts.get(room)
        if position.seq >= last:  # it has the seq: is it the event delivered here?
            if keys is None or ts is None or last == 0:
                return False
            found = await self._source.range(keys, last - 1, last)
            if not found or found[0].seq != last or found[0].ts == ts:
                return False  # the same event (or left the window: nothing to compare)
        logger.error("room %s: the shard that took over does not hold event %d that this node "
                     "delivered (a failover lost it); starting a new epoch, members resync",
                     room, last, extra={"room": room, "seq": last})
        fresh = await self._source.diverged(room, last)
        self._epochs[room], self._last[room] = fresh.epoch, fresh.seq
        return True

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
        if self._sharded is not None:
            self._ts[room] = message.ts
        self._on_event(message)
