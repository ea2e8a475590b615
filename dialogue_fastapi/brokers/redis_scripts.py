"""Key layout and Lua scripts of the Redis broker.

Every name inside a key is length-prefixed (``5:lobby``) so that no room or
event name can collide with another room's keys. A room's keys::

    {prefix}room:{room}:seq       INCR counter: the room's last seq
    {prefix}room:{room}:epoch     the room's epoch (SET NX at first use)
    {prefix}room:{room}:stream    recovery window; entry id ``{seq}-0``
    {prefix}room:{room}:idem      hash "sender NUL key" -> seq (keys inside the window)
    {prefix}room:{room}:hist      set of the room's per-event history list keys
    {prefix}room:{room}:h:{event} capped list: per-event hot history
    {prefix}room:{room}:presence  hash client_id -> user_id
    {prefix}ch:{room}             the room's pub/sub channel (one per room)
    {prefix}cluster               the control channel shared by every node

On a Redis Cluster (``redis+cluster://``) the length-prefixed room name is a
hash tag, ``{prefix}room:{5:lobby}:seq`` and ``{prefix}ch:{5:lobby}``, so every
key of a room and its sharded channel live in one slot, and the publish
script stays one atomic script on the shard that owns it.

Presence and node keys are listed in ``redis_presence_scripts``.

Stream entries and pub/sub payloads carry ``seq``, ``ts`` and the envelope
serialized by orjson; a pub/sub payload and a history item is
``b"{seq}:{ts}:{json}"`` (the JSON is never re-encoded in Lua).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..core.types import EventMessage


def text(value: bytes | str) -> str:
    """A Redis reply as text (the clients are created without ``decode_responses``)."""
    return value.decode() if isinstance(value, bytes) else value


def part(name: str) -> str:
    """A length-prefixed key part; the length is in bytes, as Lua's ``#`` counts."""
    return f"{len(name.encode())}:{name}"


class RoomKeys:
    """The Redis names of one room; ``tagged``: the room's name is a hash tag (Redis Cluster)."""

    __slots__ = ("base", "channel", "epoch", "hist", "idem", "presence", "seq", "stream")

    def __init__(self, prefix: str, room: str, tagged: bool = False) -> None:
        name = f"{{{part(room)}}}" if tagged else part(room)
        self.base = f"{prefix}room:{name}:"
        self.seq = self.base + "seq"
        self.epoch = self.base + "epoch"
        self.stream = self.base + "stream"
        self.idem = self.base + "idem"
        self.hist = self.base + "hist"
        self.presence = self.base + "presence"
        self.channel = f"{prefix}ch:{name}"

    def history(self, event: str) -> str:
        return f"{self.base}h:{part(event)}"


# KEYS: seq, epoch, stream, idem, hist, history list
# ARGV: idem field ('' = none), ts, body, window, history, channel, epoch candidate,
#       '1' if a missing epoch must be restored from the store first, the publish command
#       ('PUBLISH', or 'SPUBLISH' on a Redis Cluster: the room's sharded channel)
# -> {duplicate (0/1), seq, ts, body, epoch}, or {2} when the room has no epoch and must be
#    restored
PUBLISH = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  if ARGV[8] == '1' then return {2} end
  redis.call('SET', KEYS[2], ARGV[7])
end
if ARGV[1] ~= '' then
  local old = redis.call('HGET', KEYS[4], ARGV[1])
  if old then
    local found = redis.call('XRANGE', KEYS[3], old .. '-0', old .. '-0')
    if #found > 0 then
      local f = found[1][2]
      return {1, tonumber(f[2]), tonumber(f[4]), f[6], redis.call('GET', KEYS[2])}
    end
  end
end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[3], seq .. '-0', 's', seq, 't', ARGV[2], 'b', ARGV[3], 'k', ARGV[1])
local window = tonumber(ARGV[4])
local excess = redis.call('XLEN', KEYS[3]) - window
if excess > 0 then
  for _, e in ipairs(redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', excess)) do
    local k = e[2][8]
    if k and k ~= '' and redis.call('HGET', KEYS[4], k) == e[2][2] then
      redis.call('HDEL', KEYS[4], k)
    end
  end
  redis.call('XTRIM', KEYS[3], 'MAXLEN', window)
end
if ARGV[1] ~= '' then redis.call('HSET', KEYS[4], ARGV[1], seq) end
local packed = seq .. ':' .. ARGV[2] .. ':' .. ARGV[3]
local history = tonumber(ARGV[5])
if history > 0 then
  redis.call('RPUSH', KEYS[6], packed)
  redis.call('LTRIM', KEYS[6], -history, -1)
  redis.call('SADD', KEYS[5], KEYS[6])
end
redis.call(ARGV[9], ARGV[6], packed)
return {0, seq, tonumber(ARGV[2]), ARGV[3], redis.call('GET', KEYS[2])}
"""

# KEYS: seq, epoch ; ARGV: epoch candidate, '1' if a missing epoch must be restored first
# -> {seq, epoch}, or {} when the room has no epoch and must be restored
POSITION = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  if ARGV[2] == '1' then return {} end
  redis.call('SET', KEYS[2], ARGV[1])
end
return {tonumber(redis.call('GET', KEYS[1]) or '0'), redis.call('GET', KEYS[2])}
"""

# KEYS: seq, epoch, stream, idem, hist ; ARGV: seq, epoch -> 1 if adopted
RESTORE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local target = tonumber(ARGV[1])
if current < target or (current == 0 and redis.call('XLEN', KEYS[3]) == 0) then
  for _, k in ipairs(redis.call('SMEMBERS', KEYS[5])) do redis.call('DEL', k) end
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
  redis.call('SET', KEYS[1], target)
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# KEYS: the cluster's "since" key -> milliseconds since this Redis began holding the
# cluster's data (the first caller to find the key missing, after a start or a loss, sets it)
HELD_FOR = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], now, 'NX')
return now - tonumber(redis.call('GET', KEYS[1]))
"""

# KEYS: seq, epoch, stream, idem, hist ; ARGV: seq seen by a node, new epoch
# A shard failed over and lost events a node had delivered (Redis Cluster replication is
# asynchronous): start a new epoch at the highest seq anyone saw, so that no seq is given
# out twice and every position of the old epoch recovers with ``recovered: false``.
DIVERGED = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local target = math.max(current, tonumber(ARGV[1]))
for _, k in ipairs(redis.call('SMEMBERS', KEYS[5])) do redis.call('DEL', k) end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
redis.call('SET', KEYS[1], target)
redis.call('SET', KEYS[2], ARGV[2])
return target
"""

# KEYS: seq, epoch, stream, idem, hist, presence
DROP = """
for _, k in ipairs(redis.call('SMEMBERS', KEYS[5])) do redis.call('DEL', k) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return 1
"""

def decode(seq: int, ts: int, body: bytes) -> EventMessage:
    message = EventMessage.from_wire(orjson.loads(body))
    message.seq, message.ts = seq, ts
    return message


def entries(found: Any) -> list[EventMessage]:
    """Stream entries (``XRANGE``) as messages."""
    return [decode(int(f[b"s"]), int(f[b"t"]), f[b"b"]) for _, f in found]


def unpack(packed: bytes) -> EventMessage:
    """A pub/sub payload or a history item (``seq:ts:json``) as a message."""
    seq, ts, body = packed.split(b":", 2)
    return decode(int(seq), int(ts), body)
