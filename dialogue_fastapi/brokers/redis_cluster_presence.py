"""Presence on a Redis Cluster: every script and transaction stays in one hash slot.

The single-Redis layout updates a room, a client and a user in one script;
in a cluster those keys live in different slots (often on different masters),
so the cluster layout gives each kind of key the slot of what it belongs to::

    {prefix}room:{room}:presence   hash client -> user: the room's members (room's slot;
                                   joining checks max_size and adds in one script)
    {prefix}user:{user}            hash client -> node: the user's connections and where
                                   they are (user's slot; frames for a user are routed by it)
    {prefix}node:{node}:clients    hash client -> user: this node's connections (node's slot)
    {prefix}node:{node}:in:{client}  set of the rooms the client is in (node's slot)
    {prefix}{nodes}:live           set of the live node ids (one slot for liveness)
    {prefix}{nodes}:alive:{node}   refreshed by the node with a TTL
    {prefix}{nodes}:reaped:{node}  its connections a survivor reaped
    {prefix}{nodes}:reaping        hash dead node -> the survivor removing its connections

Writes that span slots are ordered so that a node dying between them leaves
nothing a survivor cannot clean: the node's own record is written first and
removed last. A dead node is claimed by one survivor in one script on the
liveness slot (so each departure is reported once); that survivor then removes
its connections room by room, and the claim stays recorded until it is done.
If that survivor dies during the sweep, the next survivor to sweep takes the
claim over and removes what is left (the members the first one had already
removed from their rooms are then not announced as leaving).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.types import PresenceEntry
from .redis_presence import REASSERT_BATCH, Reaped, RedisPresence
from .redis_scripts import RoomKeys, part, text

if TYPE_CHECKING:
    from redis.asyncio.cluster import RedisCluster

# KEYS: presence hash ; ARGV: client id, user id, max size (-1: none) -> 1 joined
JOIN_ROOM = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
local max = tonumber(ARGV[3])
if max >= 0 and redis.call('HLEN', KEYS[1]) >= max then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: live set, reaping hash (dead node -> the survivor removing its connections) ;
# ARGV: the alive keys' prefix, this node's id -> the dead nodes this node now removes: the
# ones it finds dead (claimed here, by this call only), and the ones whose removal another
# survivor began and did not finish because it died too (or this node did not finish)
CLAIM_DEAD = """
local dead = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. #node .. ':' .. node) == 0 then
    redis.call('SREM', KEYS[1], node)
    redis.call('HSET', KEYS[2], node, ARGV[2])
    table.insert(dead, node)
  end
end
local listed = {}
for _, d in ipairs(dead) do listed[d] = true end
local reaping = redis.call('HGETALL', KEYS[2])
for i = 1, #reaping, 2 do
  local node, by = reaping[i], reaping[i + 1]
  if redis.call('SISMEMBER', KEYS[1], node) == 1 then
    redis.call('HDEL', KEYS[2], node)  -- it came back: nothing left to finish
  elseif not listed[node] and (by == ARGV[2] or
                               redis.call('EXISTS', ARGV[1] .. #by .. ':' .. by) == 0) then
    redis.call('HSET', KEYS[2], node, ARGV[2])
    listed[node] = true
    table.insert(dead, node)
  end
end
return dead
"""

# KEYS: user hash ; ARGV: client id, node id -> 1 if removed (only while it points at the node)
FORGET_WHERE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""


class ClusterPresence(RedisPresence):
    """Cluster-wide presence on a Redis Cluster (usable once the broker has started)."""

    def __init__(self, prefix: str, node_id: str) -> None:
        super().__init__(prefix, node_id)
        self._alive_base = f"{prefix}{{nodes}}:alive:"
        self.nodes_key = f"{prefix}{{nodes}}:live"
        self.alive_key = self._alive_base + part(node_id)
        self.reaped_key = self._reaped_of(node_id)
        self.reaping_key = f"{prefix}{{nodes}}:reaping"
        self.where_key = ""  # no cluster-wide "where": a user's hash says where its clients are

    def bind(self, redis: RedisCluster | None) -> None:  # type: ignore[override]
        self._redis = redis  # type: ignore[assignment]
        self._scripts = {} if redis is None else {
            name: redis.register_script(source) for name, source in
            (("join", JOIN_ROOM), ("claim", CLAIM_DEAD), ("where", FORGET_WHERE))
        }

    # key names -------------------------------------------------------------------------
    def _room(self, room: str) -> str:
        return RoomKeys(self._prefix, room, tagged=True).presence

    def user_key(self, user_id: str) -> str:
        return f"{self._prefix}user:{{{part(user_id)}}}"

    def node_channel(self, node_id: str) -> str:
        return f"{self._prefix}node:{{{part(node_id)}}}"

    def _clients_of_node(self, node_id: str) -> str:
        return f"{self._prefix}node:{{{part(node_id)}}}:clients"

    def _reaped_of(self, node_id: str) -> str:
        """The connections of ``node_id`` a survivor reaped (its heartbeat closes them)."""
        return f"{self._prefix}{{nodes}}:reaped:{part(node_id)}"

    def _rooms_of(self, node_id: str, client_id: str) -> str:
        return f"{self._prefix}node:{{{part(node_id)}}}:in:{part(client_id)}"

    # rooms -----------------------------------------------------------------------------
    async def join(self, room: str, entry: PresenceEntry, max_size: int | None) -> bool:
        rooms = self._rooms_of(self.node_id, entry.client_id)
        await self.redis.sadd(rooms, room)  # first: a sweep after a crash finds the room
        limit = -1 if max_size is None else max_size
        joined = bool(await self._script("join")(
            keys=[self._room(room)], args=[entry.client_id, entry.user_id, limit]))
        if joined:
            self._local.setdefault(entry.client_id, (entry, set()))[1].add(room)
        else:
            await self.redis.srem(rooms, room)
        return joined

    async def leave(self, room: str, client_id: str) -> None:
        local = self._local.get(client_id)
        if local is not None:
            local[1].discard(room)
        try:
            await self.redis.hdel(self._room(room), client_id)
            await self.redis.srem(self._rooms_of(self.node_id, client_id), room)
        except Exception:
            self.stale = True
            raise

    # connections -------------------------------------------------------------------------
    async def connect(self, entry: PresenceEntry) -> None:
        await self.redis.hset(self._clients_of_node(self.node_id), entry.client_id, entry.user_id)
        await self.redis.hset(self.user_key(entry.user_id), entry.client_id, self.node_id)
        self._local.setdefault(entry.client_id, (entry, set()))

    async def disconnect(self, entry: PresenceEntry) -> None:
        local = self._local.pop(entry.client_id, None)
        try:
            await self._forget(self.node_id, entry, local[1] if local else set(), None)
        except Exception:
            self.stale = True
            raise

    async def _forget(
        self, node_id: str, entry: PresenceEntry, known: set[str],
        left: list[tuple[str, PresenceEntry]] | None,
    ) -> None:
        """Remove one connection of ``node_id`` everywhere; its node record goes last."""
        rooms_key = self._rooms_of(node_id, entry.client_id)
        rooms = known | {text(r) for r in await self.redis.smembers(rooms_key)}
        for room in sorted(rooms):
            removed = await self.redis.hdel(self._room(room), entry.client_id)
            if removed and left is not None:
                left.append((room, entry))
        await self._script("where")(keys=[self.user_key(entry.user_id)],
                                    args=[entry.client_id, node_id])
        await self.redis.delete(rooms_key)
        await self.redis.hdel(self._clients_of_node(node_id), entry.client_id)

    async def clients_of(self, user_id: str) -> list[str]:
        clients = await self.redis.hkeys(self.user_key(user_id))
        return sorted(text(c) for c in clients)

    async def nodes_of(self, user_id: str, client_id: str | None) -> set[str]:
        """The nodes where the user (or only this client of it) is connected."""
        key = self.user_key(user_id)
        if client_id:
            node = await self.redis.hget(key, client_id)
            return {text(node)} if node else set()
        return {text(n) for n in await self.redis.hvals(key)}

    # node liveness -------------------------------------------------------------------------
    async def reassert(self, *, clear: bool = False) -> int:
        self.stale = False
        if clear:
            await self._clear(self.node_id, None)
        pipe = self.redis.pipeline(transaction=False)  # batches: not a round trip per write
        clients, queued = self._clients_of_node(self.node_id), 0
        for entry, rooms in list(self._local.values()):
            pipe.hset(clients, entry.client_id, entry.user_id)
            pipe.hset(self.user_key(entry.user_id), entry.client_id, self.node_id)
            if rooms:
                pipe.sadd(self._rooms_of(self.node_id, entry.client_id), *rooms)
                for room in rooms:
                    pipe.hset(self._room(room), entry.client_id, entry.user_id)
            queued += 2 + 2 * len(rooms)
            if queued >= REASSERT_BATCH:
                await pipe.execute()
                queued = 0
        await pipe.execute()
        return len(self._local)

    async def _clear(self, node_id: str, reaped: Reaped | None) -> None:
        """Remove every connection ``node_id`` has in Redis (reported in ``reaped``)."""
        found = await self.redis.hgetall(self._clients_of_node(node_id))
        for client, user in sorted(found.items()):
            entry = PresenceEntry(text(user), text(client))
            await self._forget(node_id, entry, set(), reaped.left if reaped else None)
            if reaped is not None:
                reaped.gone.append(entry)
                # if the node was only unreachable, its heartbeat finds these and closes them
                await self.redis.sadd(self._reaped_of(node_id), entry.client_id)
        if reaped is not None and found:
            await self.redis.expire(self._reaped_of(node_id), 86400)

    async def reap(self) -> Reaped:
        dead = [text(n) for n in await self._script("claim")(
            keys=[self.nodes_key, self.reaping_key], args=[self._alive_base, self.node_id])]
        reaped = Reaped(len(dead))
        for node_id in dead:
            await self._clear(node_id, reaped)
            await self.redis.hdel(self.reaping_key, node_id)  # done: nobody takes it over
        return reaped

    async def retire(self) -> None:
        self._local.clear()
        await self._clear(self.node_id, None)
        await self.redis.srem(self.nodes_key, self.node_id)
        await self.redis.delete(self.alive_key)
