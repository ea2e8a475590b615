"""``redis://``: many processes and hosts share positions, history and fan-out.

One Lua script per publish checks the idempotency key, increments the room's
seq, appends to the room's capped stream (the recovery window), keeps the
per-event hot history and publishes on the room's own channel, so every node
sees one order. A subscriber task reads the channels of the rooms this node
has members in (``get_message`` loop, under a supervising reconnect loop); it
tracks the last seq per room and repairs any gap, including the ones left by
a dropped connection, from the stream before delivering newer events.

Control frames (room lifecycle, presence notices) travel over one cluster
channel; the sending node applies its own frame directly (with its
``_``-prefixed Python objects), the others get it without them. Frames for a
user (``direct``, ``disconnect_user``) go only to the channels of the nodes
where that user has connections. Each node refreshes a liveness key; the
survivors remove a dead node's connections from presence (``NodeLiveness``).

With persistence the node gives the broker a way to read a room's stored
position: when Redis has no epoch for a room (it restarted, or the room is
new) the position is restored from the store before the first publish, so
``seq`` continues and the epoch stays the same.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript

from ..core.metrics import SubscriberStats
from ..core.types import EventMessage, Position
from .base import ControlSink, EventSink, LimitCheck, Published, StoredRooms
from .redis_limits import REFUSED, fused, limited, refusal, same_redis
from .redis_liveness import NodeLiveness
from .redis_options import split_options
from .redis_pipeline import ScriptPipeline
from .redis_presence import Reaped, RedisPresence
from .redis_presence_scripts import ROUTE
from .redis_scripts import (
    DIVERGED,
    DROP,
    HELD_FOR,
    POSITION,
    PUBLISH,
    RESTORE,
    RoomKeys,
    decode,
    entries,
    text,
    unpack,
)
from .redis_subscriber import RedisSubscriber, Subscriber, SubscriberChannels

logger = logging.getLogger("dialogue_fastapi")
USER_FRAMES = frozenset({"direct", "disconnect_user"})  # routed to the user's nodes only


def _epoch() -> str:
    return secrets.token_urlsafe(8)


class RedisBroker:
    """Positions, hot history, fan-out and presence shared through Redis."""

    #: room names are hash tags (Redis Cluster: a room's keys and channel share a slot)
    tagged = False
    #: how the publish script sends a room's event to its channel
    publish_command = "PUBLISH"

    _publish: AsyncScript
    _position: AsyncScript
    _restore: AsyncScript
    _drop: AsyncScript
    _route: AsyncScript
    _held_for: AsyncScript
    _diverged: AsyncScript

    def __init__(
        self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str | None = None,
        node_ttl: float | None = None, retries: int = 2, command_timeout: float = 5.0,
        max_connections: int = 50, health_check_interval: float = 10.0,
        poll_timeout: float = 1.0, connect_wait: float = 3.0,
    ) -> None:
        url, options = split_options(url)
        self.url = url
        self.prefix = prefix if prefix is not None else options.get("prefix", "dialogue:")
        self.node_ttl = node_ttl if node_ttl is not None else options.get("node_ttl", 10.0)
        self.node_id = secrets.token_hex(8)
        self.presence = self._new_presence()
        self._retries, self._health_interval, self._poll = retries, health_check_interval, poll_timeout
        self.command_timeout, self.max_connections = command_timeout, max_connections
        self._connect_wait = connect_wait
        self._control_channel = f"{self.prefix}cluster"
        self._redis: Any = None  # Redis, or RedisCluster on a cluster
        self._sub: Redis | None = None
        self._subscriber: Subscriber | None = None  # one per cluster shard on a cluster
        self._publisher: ScriptPipeline | None = None
        self._liveness: NodeLiveness | None = None
        self._on_event: EventSink | None = None
        self._on_control: ControlSink | None = None
        self._store: StoredRooms | None = None
        self._restoring: dict[str, asyncio.Future[None]] = {}
        self._publish_ids = itertools.count(1)

    def use_store(self, store: StoredRooms | None) -> None:
        """With persistence: restore a room's position from the store when Redis has none,
        and read events that left the Redis window before this node got them."""
        self._store = store

    def _new_presence(self) -> RedisPresence:
        return RedisPresence(self.prefix, self.node_id)

    def _keys(self, room: str) -> RoomKeys:
        return RoomKeys(self.prefix, room, self.tagged)

    # lifecycle -----------------------------------------------------------------
    def _client(self, **options: Any) -> Redis:
        """A client whose pool makes callers wait for a free connection (up to the command
        timeout) instead of failing at once when ``max_connections`` are busy."""
        retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), self._retries)
        pool = BlockingConnectionPool.from_url(
            self.url, max_connections=self.max_connections, timeout=self.command_timeout,
            retry=retry, socket_connect_timeout=3, **options,
        )
        client: Redis = Redis.from_pool(pool)
        return client

    async def _connect(self) -> None:
        """The command client, and the subscriber's own connection."""
        self._redis = self._client(socket_timeout=self.command_timeout)  # a hung Redis fails fast
        self._sub = self._client(health_check_interval=self._health_interval,
                                 client_name=f"dialogue-sub-{self.node_id}")

    def _new_subscriber(self, channels: SubscriberChannels, on_event: EventSink) -> Subscriber:
        assert self._sub is not None
        return RedisSubscriber(self._sub, channels, on_event, self, self._poll)

    async def start(self, on_event: EventSink, on_control: ControlSink) -> None:
        self._on_event, self._on_control = on_event, on_control
        await self._connect()
        self.presence.bind(self._redis)
        scripts = (PUBLISH, POSITION, RESTORE, DROP, ROUTE, HELD_FOR, DIVERGED)
        (self._publish, self._position, self._restore, self._drop, self._route, self._held_for,
         self._diverged) = (self._redis.register_script(s) for s in scripts)
        channels = SubscriberChannels(self._control_channel,
                                      self.presence.node_channel(self.node_id), self._frame_received)
        self._publisher = ScriptPipeline(self._redis, limited(PUBLISH))  # redis_limits
        self._publisher.start()
        self._subscriber = self._new_subscriber(channels, on_event)
        self._subscriber.start()
        self._liveness = NodeLiveness(self._redis, self.presence, self.node_ttl, self._node_lost,
                                      self._evicted)
        await self._liveness.start()
        try:  # ready when listening; if Redis is down the subscriber keeps trying by itself
            async with asyncio.timeout(self._connect_wait):
                while not self._subscriber.listening:
                    await asyncio.sleep(0.005)
        except TimeoutError:
            logger.error("redis subscriber is not listening yet (%s); the node is not ready", self.url)

    async def stop(self) -> None:
        liveness, self._liveness = self._liveness, None
        if liveness is not None:
            await liveness.stop()
            try:
                await self.presence.retire()
            except Exception as exc:
                logger.warning("could not remove this node from redis (%s); the survivors will "
                               "after %.0fs", exc, self.node_ttl)
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            await subscriber.stop()
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await publisher.stop()
        self._on_event = self._on_control = None
        self.presence.bind(None)
        for client in (self._sub, self._redis):
            if client is not None:
                await client.aclose()
        self._sub = self._redis = None

    @property
    def redis(self) -> Any:
        if self._redis is None:
            raise RuntimeError("the Redis broker is not started")
        return self._redis

    # positions and history -------------------------------------------------------
    async def publish(self, message: EventMessage, window: int, history: int = 0) -> Published:
        return await self.submit(message, window, history)

    def fuses_limits(self, storage: str) -> bool:
        """Limits kept in this Redis are checked inside the publish script (``redis_limits``);
        not on a Redis Cluster (``tagged``): the limits' keys live in other slots."""
        return not self.tagged and same_redis(self.url, storage)

    def submit(
        self, message: EventMessage, window: int, history: int = 0,
        limits: LimitCheck | None = None,
    ) -> Awaitable[Published]:
        """Queue the publish now (its place in the room's order is taken here), await later;
        ``limits``: checked and counted first (over one, ``LimitRefused``, nothing published)."""
        keys = self._keys(message.room)
        if not message.ts:
            message.ts = int(time.time() * 1000)
        key = message.idempotency_key
        # without the sender's key the publish gets one of this node's own, so that a retry
        # after an ambiguous failure (sent, but the answer was lost) cannot publish it twice
        own = key is None
        field = f"\x01{self.node_id}:{next(self._publish_ids)}" if own else f"{message.from_}\x00{key}"
        script_keys = [keys.seq, keys.epoch, keys.stream, keys.idem, keys.hist,
                       keys.history(message.event)]
        args = [field, message.ts, orjson.dumps(message.to_record()), max(window, 1),
                max(history, 0), keys.channel, _epoch(), "1" if self._store is not None else "0",
                self.publish_command]
        if self._publisher is None:
            raise RuntimeError("the Redis broker is not started")
        limit_keys, limit_args = fused(limits)
        return self._published(message, own, script_keys, args,
                               self._publisher.submit(script_keys + limit_keys, args + limit_args))

    async def _published(
        self, message: EventMessage, own: bool, keys: list[Any], args: list[Any],
        pending: Awaitable[Any],
    ) -> Published:
        found = await pending
        if int(found[0]) == REFUSED:
            raise refusal(found)
        if int(found[0]) == 2:  # Redis has no epoch for the room: restore it, then publish
            await self._restore_stored(message.room)
            found = await self._publish(keys=keys, args=[*args[:7], "0", *args[8:]])
        duplicate, seq, ts, raw, epoch = found
        if duplicate and not own:
            return Published(decode(int(seq), int(ts), raw), duplicate=True, epoch=text(epoch))
        # (a duplicate of our own key: a retried publish whose first answer was lost)
        message.seq = int(seq)
        return Published(message, epoch=text(epoch))

    async def position(self, room: str) -> Position:
        keys = self._keys(room)
        for attempt in range(2):
            restore = "1" if self._store is not None and attempt == 0 else "0"
            found = await self._position(keys=[keys.seq, keys.epoch], args=[_epoch(), restore])
            if found:
                break
            await self._restore_stored(room)
        seq, epoch = found
        return Position(int(seq), epoch.decode())

    async def _restore_stored(self, room: str) -> None:
        """Redis has no epoch for the room: continue from the store's position, if any
        (one restore per room at a time; concurrent callers wait for it)."""
        task = self._restoring.get(room)
        if task is None:
            task = self._restoring[room] = asyncio.ensure_future(self._restore_from_store(room))
            task.add_done_callback(lambda _: self._restoring.pop(room, None))
        await asyncio.shield(task)

    async def _restore_from_store(self, room: str) -> None:
        store = self._store
        if store is None:
            return
        if store.fence > 0:
            # Redis has held the cluster's data for less than the fence (it was just started,
            # or restarted empty): other nodes may still hold events they acknowledged before
            # in their write-behind queues; let them reach the store first, or their seqs
            # would be given out again
            held = await self._held_for_room(room)
            if held < store.fence:
                logger.info("room %s: redis holds the cluster's data for %.2fs only; reading "
                            "the store in %.2fs", room, held, store.fence - held)
                await asyncio.sleep(store.fence - held)
        stored = await store.position_of(room)
        if stored is not None:
            await self.restore(room, stored)
            logger.info("room %s: position restored from the store (seq %d)", room, stored.seq)

    async def _held_for_room(self, room: str) -> float:
        """Seconds since the Redis holding ``room`` began holding the cluster's data."""
        return float(await self._held_for(keys=[f"{self.prefix}since"])) / 1000

    async def range(self, keys: RoomKeys, after: int, upto: int | None = None) -> list[EventMessage]:
        end = "+" if upto is None else f"{upto}-0"
        return entries(await self.redis.xrange(keys.stream, f"{after + 1}-0", end))

    async def read(
        self, room: str, after: int, *, partial: bool = False
    ) -> list[EventMessage] | None:
        keys = self._keys(room)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(keys.seq)
            pipe.xrange(keys.stream, f"{after + 1}-0", "+")
            last, found = await pipe.execute()
        if after >= int(last or 0):
            return []
        events = entries(found)
        if not partial and (not events or events[0].seq > after + 1):
            return None
        return events

    async def recent(self, room: str) -> list[EventMessage]:
        keys = self._keys(room)
        lists = sorted(await self.redis.smembers(keys.hist))
        if not lists:
            return []
        async with self.redis.pipeline(transaction=True) as pipe:
            for name in lists:
                pipe.lrange(name, 0, -1)
            kept = await pipe.execute()
        merged = [unpack(item) for items in kept for item in items]
        merged.sort(key=lambda m: m.seq)
        return merged

    async def drop_room(self, room: str) -> None:
        k = self._keys(room)
        await self._drop(keys=[k.seq, k.epoch, k.stream, k.idem, k.hist, k.presence])
        self.presence.forget_room(room)
        if self._subscriber is not None:
            self._subscriber.reset(room)

    async def restore(self, room: str, position: Position) -> None:
        k = self._keys(room)
        await self._restore(keys=[k.seq, k.epoch, k.stream, k.idem, k.hist],
                            args=[position.seq, position.epoch])

    async def stored(self, room: str, after: int, before: int) -> list[EventMessage]:
        """Events ``after < seq < before`` from the store (none without persistence)."""
        if self._store is None or before <= after + 1:
            return []
        found = await self._store.read_after(room, after, before - after - 1)
        return [m for m in found if m.seq < before]

    async def raise_to(self, room: str, position: Position) -> None:
        """This node saw events beyond what Redis has (restored from a lagging store)."""
        logger.warning("room %s: redis is behind this node (seq %d); raising it", room, position.seq)
        await self.restore(room, position)

    async def diverged(self, room: str, last: int) -> Position:
        """A failover lost events a node had delivered: a new epoch from the highest seq
        seen, and every member in the cluster resyncs (their positions are void)."""
        k = self._keys(room)
        epoch = _epoch()
        seq = await self._diverged(keys=[k.seq, k.epoch, k.stream, k.idem, k.hist],
                                   args=[last, epoch])
        await self.control({"type": "room_reset", "room": room})
        return Position(int(seq), epoch)

    async def lost(self, room: str) -> None:
        """Redis lost the room's history: this node's members must resync."""
        if self._on_control is not None:
            await self._on_control({"type": "room_reset", "room": room})

    # control frames ------------------------------------------------------------------
    async def control(self, frame: dict[str, Any]) -> None:
        if self._on_control is not None:
            await self._on_control(frame)  # this node: the frame as is
        if self._redis is None:
            return  # not started (like the memory broker): no node listens yet
        public = {k: v for k, v in frame.items() if not k.startswith("_")}
        payload = orjson.dumps({"node": self.node_id, "frame": public})
        if public.get("type") in USER_FRAMES:
            await self._to_user(str(public.get("user_id") or ""),
                                str(public.get("client_id") or ""), payload)
        else:
            await self._broadcast(payload)

    async def _broadcast(self, payload: bytes) -> None:
        """A frame for every node, on the control channel."""
        await self.redis.publish(self._control_channel, payload)

    async def _to_user(self, user: str, client: str, payload: bytes) -> None:
        """Publish a user's frame on the channels of the nodes where it is connected."""
        await self._route(keys=[self.presence.user_key(user), self.presence.where_key],
                          args=[self.prefix, client, payload, self.node_id])

    async def _frame_received(self, data: bytes, direct: bool) -> None:
        try:
            payload = orjson.loads(data)
            if payload.get("node") == self.node_id or self._on_control is None:
                return  # the sending node applied its frame already
            await self._on_control(payload["frame"])
        except Exception:
            logger.exception("bad control frame from redis (%s channel)",
                             "node" if direct else "cluster")

    async def _node_lost(self, reaped: Reaped) -> None:
        """This node removed a dead node's connections: tell every node (presence notices),
        and run their hooks here, once in the cluster (``connections_lost``, this node only)."""
        left = [[room, e.user_id, e.client_id] for room, e in reaped.left]
        if left:
            await self.control({"type": "node_lost", "left": left})
        if self._on_control is not None:
            await self._on_control({"type": "connections_lost", "left": left,
                                    "gone": [[e.user_id, e.client_id] for e in reaped.gone]})

    async def _evicted(self, client_ids: list[str]) -> None:
        """A survivor reaped these connections of this (living) node and ran their hooks:
        they are closed here (``connections_evicted``, this node only) to reconnect."""
        if self._on_control is not None:
            await self._on_control({"type": "connections_evicted", "clients": client_ids})

    @property
    def subscriber_stats(self) -> SubscriberStats:
        """The subscriber's state for ``/ready`` and the metrics (up, reconnects, gap repairs)."""
        subscriber = self._subscriber
        if subscriber is None:
            return SubscriberStats()
        subscriber.stats.up = subscriber.listening
        return subscriber.stats

    async def healthy(self) -> bool:
        if self._subscriber is None or not self._subscriber.listening or self._redis is None:
            return False
        try:
            async with asyncio.timeout(2):
                await self._redis.ping()
        except Exception:
            return False
        return True

    # subscriptions -----------------------------------------------------------------
    async def subscribe(self, room: str) -> None:
        if self._subscriber is None or self._subscriber.subscribed(room):
            return
        position = await self.position(room)  # baseline: later events get delivered
        await self._subscriber.subscribe(room, self._keys(room), position)

    async def unsubscribe(self, room: str) -> None:
        if self._subscriber is not None:
            await self._subscriber.unsubscribe(room)
