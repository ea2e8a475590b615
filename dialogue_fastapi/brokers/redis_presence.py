"""Presence in Redis: room membership with atomic ``max_size``, users' connections.

A room's members are a hash ``client_id -> user_id``; joining checks the size
and adds the client in one Lua script, so concurrent joins on any number of
nodes never exceed ``max_size``. Each client keeps the set of rooms it is in,
so a disconnect removes it from all of them; each user keeps its client ids;
each node keeps its own connections, so that the survivors can remove a dead
node's connections (``reap``). The node also mirrors its own entries in
memory: when Redis lost them (a restart) or a survivor reaped them (the node
was unreachable for longer than the TTL), ``reassert`` writes them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.types import PresenceEntry
from .redis_presence_scripts import CLEAR_NODE, CONNECT, DISCONNECT, JOIN, REAP
from .redis_scripts import RoomKeys, part, text

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript


#: writes per pipeline when a node writes its presence back
REASSERT_BATCH = 1000


@dataclass
class Reaped:
    """What one sweep removed: how many dead nodes, who left which room, who disconnected."""

    dead: int
    left: list[tuple[str, PresenceEntry]] = field(default_factory=list)
    gone: list[PresenceEntry] = field(default_factory=list)


class RedisPresence:
    """Cluster-wide presence kept in Redis (usable once the broker has started)."""

    def __init__(self, prefix: str, node_id: str) -> None:
        self._prefix, self.node_id = prefix, node_id
        self._redis: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._local: dict[str, tuple[PresenceEntry, set[str]]] = {}  # client -> (entry, rooms)
        self.stale = False  # a leave or disconnect did not reach Redis: rewrite ours when back
        self.nodes_key = f"{prefix}nodes"
        self.where_key = f"{prefix}where"
        self._node_base = f"{prefix}node:{part(node_id)}"
        self.alive_key = self._node_base + ":alive"
        self._clients_key = self._node_base + ":clients"
        self.reaped_key = self._node_base + ":reaped"  # its connections a survivor reaped

    def bind(self, redis: Redis | None) -> None:
        """Use this client (None: the broker stopped)."""
        self._redis = redis
        self._scripts = {} if redis is None else {
            name: redis.register_script(source) for name, source in
            (("join", JOIN), ("connect", CONNECT), ("disconnect", DISCONNECT),
             ("reap", REAP), ("clear", CLEAR_NODE))
        }

    def _script(self, name: str) -> AsyncScript:
        if not self._scripts:
            raise RuntimeError("the Redis broker is not started")
        return self._scripts[name]

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("the Redis broker is not started")
        return self._redis

    def _room(self, room: str) -> str:
        return RoomKeys(self._prefix, room).presence

    def user_key(self, user_id: str) -> str:
        return f"{self._prefix}user:{part(user_id)}"

    def _client(self, client_id: str) -> str:
        return f"{self._prefix}client:{part(client_id)}"

    def node_channel(self, node_id: str) -> str:
        return f"{self._prefix}node:{part(node_id)}"

    # rooms ---------------------------------------------------------------------------
    async def join(self, room: str, entry: PresenceEntry, max_size: int | None) -> bool:
        limit = -1 if max_size is None else max_size
        joined = bool(await self._script("join")(
            keys=[self._room(room), self._client(entry.client_id)],
            args=[entry.client_id, entry.user_id, limit],
        ))
        if joined:
            self._local.setdefault(entry.client_id, (entry, set()))[1].add(room)
        return joined

    async def leave(self, room: str, client_id: str) -> None:
        local = self._local.get(client_id)
        if local is not None:
            local[1].discard(room)
        key = self._room(room)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(key, client_id)
                pipe.srem(self._client(client_id), key)
                await pipe.execute()
        except Exception:
            self.stale = True
            raise

    def forget_room(self, room: str) -> None:
        """The room was dropped (its presence hash deleted): forget it locally too."""
        for _, rooms in self._local.values():
            rooms.discard(room)

    async def members(self, room: str) -> list[PresenceEntry]:
        raw = await self.redis.hgetall(self._room(room))
        entries = [PresenceEntry(text(user), text(client)) for client, user in raw.items()]
        entries.sort(key=lambda e: e.client_id)
        return entries

    async def count(self, room: str) -> int:
        return int(await self.redis.hlen(self._room(room)))

    # connections ---------------------------------------------------------------------
    async def connect(self, entry: PresenceEntry) -> None:
        await self._script("connect")(
            keys=[self.user_key(entry.user_id), self.where_key, self._clients_key],
            args=[entry.client_id, entry.user_id, self.node_id],
        )
        self._local.setdefault(entry.client_id, (entry, set()))

    async def disconnect(self, entry: PresenceEntry) -> None:
        self._local.pop(entry.client_id, None)
        try:
            await self._script("disconnect")(
                keys=[self._clients_key], args=[self._prefix, entry.client_id, entry.user_id],
            )
        except Exception:
            self.stale = True
            raise

    async def clients_of(self, user_id: str) -> list[str]:
        clients = await self.redis.smembers(self.user_key(user_id))
        return sorted(text(c) for c in clients)

    # node liveness -----------------------------------------------------------------------
    def forget_connections(self, client_ids: list[str]) -> None:
        """Stop mirroring these connections (a survivor reaped them; they are being closed)."""
        for client_id in client_ids:
            self._local.pop(client_id, None)

    async def reassert(self, *, clear: bool = False) -> int:
        """Write this node's connections and memberships back (after Redis lost them);
        ``clear`` first removes what Redis holds of this node (some of it is stale)."""
        self.stale = False
        if clear:
            await self._script("clear")(keys=[self.nodes_key, self.alive_key],
                                        args=[self._prefix, self.node_id, ""])
        connect, join = self._script("connect"), self._script("join")
        pipe = self.redis.pipeline(transaction=False)  # batches: not a round trip per write
        queued = 0
        for entry, rooms in list(self._local.values()):
            await connect(keys=[self.user_key(entry.user_id), self.where_key, self._clients_key],
                          args=[entry.client_id, entry.user_id, self.node_id], client=pipe)
            for room in list(rooms):
                await join(keys=[self._room(room), self._client(entry.client_id)],
                           args=[entry.client_id, entry.user_id, -1], client=pipe)
            queued += 1 + len(rooms)
            if queued >= REASSERT_BATCH:
                await pipe.execute()
                queued = 0
        await pipe.execute()
        return len(self._local)

    async def reap(self) -> Reaped:
        """Remove the connections of every dead node, and say who left which room."""
        found = await self._script("reap")(keys=[self.nodes_key], args=[self._prefix, self.node_id])
        reaped = Reaped(int(found[0]))
        flat = found[1:]
        for i in range(0, len(flat) - 2, 3):
            key, entry = text(flat[i]), PresenceEntry(text(flat[i + 1]), text(flat[i + 2]))
            if not key:
                reaped.gone.append(entry)
            elif (room := self._room_of(key)) is not None:
                reaped.left.append((room, entry))
        return reaped

    async def retire(self) -> None:
        """This node stops: remove whatever of its presence is left, and the node itself."""
        self._local.clear()
        await self._script("clear")(keys=[self.nodes_key, self.alive_key],
                                    args=[self._prefix, self.node_id, "1"])

    def _room_of(self, presence_key: str) -> str | None:
        """The room id inside ``{prefix}room:{len}:{room}:presence``."""
        head = f"{self._prefix}room:"
        if not presence_key.startswith(head) or not presence_key.endswith(":presence"):
            return None
        body = presence_key[len(head):-len(":presence")]
        size, _, name = body.partition(":")
        return name if size.isdigit() and len(name.encode()) == int(size) else None

