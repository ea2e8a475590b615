"""Presence in Redis: room membership with atomic ``max_size``, users' connections.

A room's members are a hash ``client_id -> user_id``; joining checks the size
and adds the client in one Lua script, so concurrent joins on any number of
nodes never exceed ``max_size``. Each client keeps the set of rooms it is in,
so a disconnect removes it from all of them; each user keeps its client ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..types import PresenceEntry
from .redis_scripts import DISCONNECT, JOIN, RoomKeys, part

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript


class RedisPresence:
    """Cluster-wide presence kept in Redis (usable once the broker has started)."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._redis: Redis | None = None
        self._join: AsyncScript | None = None
        self._disconnect: AsyncScript | None = None

    def bind(self, redis: Redis | None) -> None:
        """Use this client (None: the broker stopped)."""
        self._redis = redis
        if redis is not None:
            self._join = redis.register_script(JOIN)
            self._disconnect = redis.register_script(DISCONNECT)

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("the Redis broker is not started")
        return self._redis

    def _room(self, room: str) -> str:
        return RoomKeys(self._prefix, room).presence

    def _user(self, user_id: str) -> str:
        return f"{self._prefix}user:{part(user_id)}"

    def _client(self, client_id: str) -> str:
        return f"{self._prefix}client:{part(client_id)}"

    async def join(self, room: str, entry: PresenceEntry, max_size: int | None) -> bool:
        if self._join is None:
            raise RuntimeError("the Redis broker is not started")
        limit = -1 if max_size is None else max_size
        joined = await self._join(
            keys=[self._room(room), self._client(entry.client_id)],
            args=[entry.client_id, entry.user_id, limit],
        )
        return bool(joined)

    async def leave(self, room: str, client_id: str) -> None:
        key = self._room(room)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(key, client_id)
            pipe.srem(self._client(client_id), key)
            await pipe.execute()

    async def members(self, room: str) -> list[PresenceEntry]:
        raw = await self.redis.hgetall(self._room(room))
        entries = [PresenceEntry(_text(user), _text(client)) for client, user in raw.items()]
        entries.sort(key=lambda e: e.client_id)
        return entries

    async def count(self, room: str) -> int:
        return int(await self.redis.hlen(self._room(room)))

    async def connect(self, entry: PresenceEntry) -> None:
        await self.redis.sadd(self._user(entry.user_id), entry.client_id)

    async def disconnect(self, entry: PresenceEntry) -> None:
        if self._disconnect is None:
            raise RuntimeError("the Redis broker is not started")
        await self._disconnect(
            keys=[self._user(entry.user_id), self._client(entry.client_id)],
            args=[entry.client_id],
        )

    async def clients_of(self, user_id: str) -> list[str]:
        clients = await self.redis.smembers(self._user(user_id))
        return sorted(_text(c) for c in clients)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
