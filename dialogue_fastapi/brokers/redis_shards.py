"""The Redis Cluster broker's subscriber: one sharded pub/sub connection per shard.

Each room's channel is a sharded channel (``SSUBSCRIBE``) that lives in the
room's hash slot, and only the master owning that slot delivers it. This node
keeps one ``RedisSubscriber`` per master that owns a channel it reads (its
rooms, the cluster's control channel and its own node channel), created when
the first such channel appears and closed when the last one goes.

When a shard's connection fails (its master died), or Redis unsubscribes a
channel by itself (its slot moved to another master: ``sunsubscribe``), the
node re-reads the cluster's slots and moves every channel whose owner changed
to the subscriber of the new owner, carrying each room's position along; the
new subscription repairs the gap from the room's stream, as after any
reconnect. While the cluster elects a new master the slots still point to the
dead one: the move is retried with backoff until it sticks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core.metrics import SubscriberStats
from ..core.types import Position
from .base import EventSink
from .redis_scripts import RoomKeys
from .redis_subscriber import RedisSubscriber, RoomSource, Sharded, SubscriberChannels

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

logger = logging.getLogger("dialogue_fastapi")
#: seconds, the longest pause between two re-reads of the slots while a shard is down (one
#: slot-map read per app node each time; jittered by 0.5-1.5x)
REPAIR_BACKOFF_CAP = 0.5
Connect = Callable[[str, int], "Redis"]


class ShardedSubscriber:
    """Reads this node's sharded channels from the masters that own them."""

    def __init__(
        self, cluster: RedisCluster, connect: Connect, channels: SubscriberChannels,
        on_event: EventSink, rooms: RoomSource, poll: float,
    ) -> None:
        self._cluster, self._connect = cluster, connect
        self._on_event, self._source, self._poll = on_event, rooms, poll
        self._on_frame = channels.on_frame
        self._control = channels.control.encode()
        self._frames = {channels.control.encode(): False, channels.node.encode(): True}
        self._shards: dict[str, RedisSubscriber] = {}  # master "host:port" -> its subscriber
        self._where: dict[str, str] = {}  # room -> the master it is read from
        self._hooks = Sharded(self._shard_down, self._channel_moved)
        self._repair: asyncio.Task[None] | None = None
        self._again = False
        self._delay, self._last_repair = 0.05, 0.0
        self._failing: set[str] = set()  # masters reported unreachable (logged once)
        self._stopping = False
        self.stats = SubscriberStats()

    # the broker's side ---------------------------------------------------------------
    def start(self) -> None:
        for channel, direct in self._frames.items():
            self._shard_for(channel).add_frames(channel, direct)

    async def stop(self) -> None:
        self._stopping = True
        if self._repair is not None:
            self._repair.cancel()
            await asyncio.gather(self._repair, return_exceptions=True)
        shards, self._shards = list(self._shards.values()), {}
        await asyncio.gather(*(s.stop() for s in shards), return_exceptions=True)
        for shard in shards:
            await shard.close_client()
        self._where.clear()

    @property
    def listening(self) -> bool:
        """The control channel's shard is being read (the node can take part)."""
        owner = next((s for s in self._shards.values() if self._control in s.frame_channels()),
                     None)
        return owner is not None and owner.listening and not owner.down

    def subscribed(self, room: str) -> bool:
        return room in self._where

    def reset(self, room: str) -> None:
        shard = self._shards.get(self._where.get(room, ""))
        if shard is not None:
            shard.reset(room)

    async def subscribe(self, room: str, keys: RoomKeys, position: Position) -> None:
        if room in self._where:
            return
        shard = self._shard_for(keys.channel.encode())
        self._where[room] = shard.name
        await shard.subscribe(room, keys, position)

    async def unsubscribe(self, room: str) -> None:
        shard = self._shards.get(self._where.pop(room, ""))
        if shard is None:
            return
        await shard.unsubscribe(room)
        if not shard.rooms() and not shard.frame_channels():
            await self._retire(shard)

    # shards --------------------------------------------------------------------------
    def _owner(self, channel: bytes) -> tuple[str, int]:
        node = self._cluster.get_node_from_key(channel.decode())
        if node is None:
            raise ConnectionError(f"no master owns the slot of {channel!r} now")
        return node.host, int(node.port)

    def _shard_for(self, channel: bytes) -> RedisSubscriber:
        host, port = self._owner(channel)
        name = f"{host}:{port}"
        shard = self._shards.get(name)  # (one that is down keeps its place until it is repaired)
        if shard is None:
            shard = RedisSubscriber(self._connect(host, port), None, self._on_event, self._source,
                                    self._poll, sharded=self._hooks, stats=self.stats,
                                    on_frame=self._on_frame)
            shard.name = name
            self._shards[name] = shard
            shard.start()
        return shard

    async def _retire(self, shard: RedisSubscriber) -> None:
        if self._shards.get(shard.name) is shard:
            del self._shards[shard.name]
        await shard.stop()
        await shard.close_client()

    def _shard_down(self, shard: RedisSubscriber) -> None:
        self._failing = {name for name in self._failing  # the ones that came back
                         if not (name in self._shards and self._shards[name].listening)}
        if shard.name not in self._failing:  # once per outage, not once per attempt
            self._failing.add(shard.name)
            logger.warning("redis cluster shard %s is unreachable; re-reading the cluster's "
                           "slots until its channels have a master that answers", shard.name)
        self._schedule()

    def _channel_moved(self, shard: RedisSubscriber, channel: bytes) -> None:
        logger.info("redis cluster moved channel %r away from %s; following it", channel,
                    shard.name)
        self._schedule()

    def _schedule(self) -> None:
        if self._stopping:
            return
        if self._repair is None or self._repair.done():
            self._repair = asyncio.create_task(self._repair_loop(), name="dialogue-redis-shards")
        else:
            self._again = True

    async def _repair_loop(self) -> None:
        # repairs in a row back off (a dead master stays in the slots until the cluster
        # promotes its replica, and each attempt on it fails at once), to at most
        # REPAIR_BACKOFF_CAP: a node follows the promoted replica within about that long
        now = time.monotonic()
        self._delay = 0.05 if now - self._last_repair > 5.0 else min(self._delay * 2,
                                                                     REPAIR_BACKOFF_CAP)
        self._last_repair = now
        await asyncio.sleep(self._delay * (0.5 + random.random()))
        while not self._stopping:
            self._again = False
            try:
                await self._cluster.nodes_manager.initialize()  # the slots as the cluster sees them
                await self._move_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("could not re-read the redis cluster's slots (%s: %s); retrying",
                               type(exc).__name__, exc)
                self._again = True
            if not self._again:
                return
            self._delay = min(self._delay * 2, REPAIR_BACKOFF_CAP)
            await asyncio.sleep(self._delay * (0.5 + random.random()))

    async def _move_all(self) -> None:
        """Every channel read from a master that is down or no longer owns its slot moves."""
        for shard in list(self._shards.values()):
            if shard.down and self._shards.get(shard.name) is shard:
                del self._shards[shard.name]  # its channels get a new subscriber, wherever
            for channel, direct in shard.frame_channels().items():
                if shard.down or self._owner_name(channel) != shard.name:
                    shard.unwatch(channel)
                    await self._shard_for(channel).watch(channel, direct)
            for room in shard.rooms():
                keys = shard.keys_of(room)
                if keys is None or not (shard.down or
                                        self._owner_name(keys.channel.encode()) != shard.name):
                    continue
                moved = shard.detach(room)
                if moved is None or room not in self._where:  # unsubscribed meanwhile
                    continue
                keys, position, ts = moved
                target = self._shard_for(keys.channel.encode())
                self._where[room] = target.name
                await target.subscribe(room, keys, position, moved=True, ts=ts)
                if not shard.down:
                    await shard.send_unsubscribe(keys.channel)
            if shard.down or (not shard.rooms() and not shard.frame_channels()):
                await self._retire(shard)
        for shard in list(self._shards.values()):
            if shard.down:
                self._again = True

    def _owner_name(self, channel: bytes) -> str:
        host, port = self._owner(channel)
        return f"{host}:{port}"
