"""``redis://``: many processes and hosts share positions, history and fan-out.

One Lua script per publish checks the idempotency key, increments the room's
seq, appends to the room's capped stream (the recovery window), keeps the
per-event hot history and publishes on the room's own channel, so every node
sees one order. A subscriber task reads the channels of the rooms this node
has members in (``get_message`` loop, under a supervising reconnect loop); it
tracks the last seq per room and repairs any gap, including the ones left by
a dropped connection, from the stream before delivering newer events.
Control frames travel over one cluster channel; the sending node applies its
own frame directly (with its ``_``-prefixed Python objects), the others get
it without them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.retry import Retry

from ..types import EventMessage, Position
from .base import ControlSink, EventSink, Published
from .redis_presence import RedisPresence
from .redis_scripts import DROP, POSITION, PUBLISH, RESTORE, RoomKeys, decode, entries, unpack
from .redis_subscriber import RedisSubscriber

logger = logging.getLogger("dialogue_fastapi")


def _epoch() -> str:
    return secrets.token_urlsafe(8)


class RedisBroker:
    """Positions, hot history, fan-out and presence shared through Redis."""

    _publish: AsyncScript
    _position: AsyncScript
    _restore: AsyncScript
    _drop: AsyncScript

    def __init__(
        self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "dialogue:",
        retries: int = 3, health_check_interval: float = 10.0, poll_timeout: float = 1.0,
        connect_wait: float = 3.0,
    ) -> None:
        self.url, self.prefix = url, prefix
        self.node_id = secrets.token_hex(8)
        self.presence = RedisPresence(prefix)
        self._retries, self._health_interval, self._poll = retries, health_check_interval, poll_timeout
        self._connect_wait = connect_wait
        self._control_channel = f"{prefix}cluster"
        self._redis: Redis | None = None
        self._sub: Redis | None = None
        self._subscriber: RedisSubscriber | None = None
        self._on_event: EventSink | None = None
        self._on_control: ControlSink | None = None

    # lifecycle -----------------------------------------------------------------
    def _client(self, **options: Any) -> Redis:
        retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), self._retries)
        client: Redis = Redis.from_url(self.url, retry=retry, socket_connect_timeout=3, **options)
        return client

    async def start(self, on_event: EventSink, on_control: ControlSink) -> None:
        self._on_event, self._on_control = on_event, on_control
        self._redis = self._client()
        self._sub = self._client(health_check_interval=self._health_interval,
                                 client_name=f"dialogue-sub-{self.node_id}")
        self.presence.bind(self._redis)
        scripts = (PUBLISH, POSITION, RESTORE, DROP)
        self._publish, self._position, self._restore, self._drop = (
            self._redis.register_script(s) for s in scripts
        )
        self._subscriber = RedisSubscriber(self._sub, self._control_channel, on_event,
                                           self._control_received, self._range, self._poll)
        self._subscriber.start()
        try:  # ready when listening; if Redis is down the subscriber keeps trying by itself
            async with asyncio.timeout(self._connect_wait):
                while not self._subscriber.listening:
                    await asyncio.sleep(0.005)
        except TimeoutError:
            logger.error("redis subscriber is not listening yet (%s); the node is not ready", self.url)

    async def stop(self) -> None:
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            await subscriber.stop()
        self._on_event = self._on_control = None
        self.presence.bind(None)
        for client in (self._sub, self._redis):
            if client is not None:
                await client.aclose()
        self._sub = self._redis = None

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("the Redis broker is not started")
        return self._redis

    # positions and history -------------------------------------------------------
    async def publish(self, message: EventMessage, window: int, history: int = 0) -> Published:
        keys = RoomKeys(self.prefix, message.room)
        if not message.ts:
            message.ts = int(time.time() * 1000)
        key = message.idempotency_key
        field = "" if key is None else f"{message.from_}\x00{key}"
        body = orjson.dumps(message.to_record())
        hist = keys.history(message.event)
        duplicate, seq, ts, raw = await self._publish(
            keys=[keys.seq, keys.epoch, keys.stream, keys.idem, keys.hist, hist],
            args=[field, message.ts, body, max(window, 1), max(history, 0), keys.channel, _epoch()],
        )
        if duplicate:
            return Published(decode(int(seq), int(ts), raw), duplicate=True)
        message.seq = int(seq)
        return Published(message)

    async def position(self, room: str) -> Position:
        keys = RoomKeys(self.prefix, room)
        seq, epoch = await self._position(keys=[keys.seq, keys.epoch], args=[_epoch()])
        return Position(int(seq), epoch.decode())

    async def _range(self, keys: RoomKeys, after: int, upto: int | None = None) -> list[EventMessage]:
        end = "+" if upto is None else f"{upto}-0"
        return entries(await self.redis.xrange(keys.stream, f"{after + 1}-0", end))

    async def read(
        self, room: str, after: int, *, partial: bool = False
    ) -> list[EventMessage] | None:
        keys = RoomKeys(self.prefix, room)
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
        keys = RoomKeys(self.prefix, room)
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
        k = RoomKeys(self.prefix, room)
        await self._drop(keys=[k.seq, k.epoch, k.stream, k.idem, k.hist, k.presence])
        if self._subscriber is not None:
            self._subscriber.reset(room)

    async def restore(self, room: str, position: Position) -> None:
        k = RoomKeys(self.prefix, room)
        await self._restore(keys=[k.seq, k.epoch, k.stream, k.idem, k.hist],
                            args=[position.seq, position.epoch])

    async def control(self, frame: dict[str, Any]) -> None:
        if self._on_control is not None:
            await self._on_control(frame)  # this node: the frame as is
        if self._redis is None:
            return  # not started (like the memory broker): no node listens yet
        public = {k: v for k, v in frame.items() if not k.startswith("_")}
        await self.redis.publish(self._control_channel,
                                 orjson.dumps({"node": self.node_id, "frame": public}))

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
        keys = RoomKeys(self.prefix, room)
        last = int(await self.redis.get(keys.seq) or 0)  # baseline: later events get delivered
        await self._subscriber.subscribe(room, keys, last)

    async def unsubscribe(self, room: str) -> None:
        if self._subscriber is not None:
            await self._subscriber.unsubscribe(room)

    async def _control_received(self, data: bytes) -> None:
        try:
            payload = orjson.loads(data)
            if payload.get("node") == self.node_id or self._on_control is None:
                return  # the sending node applied its frame already
            await self._on_control(payload["frame"])
        except Exception:
            logger.exception("bad control frame from redis")
