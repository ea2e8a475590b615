"""Key layout and Lua scripts of cluster-wide presence and node liveness.

Keys (names inside keys are length-prefixed in bytes, see ``part``)::

    {prefix}room:{room}:presence  hash client_id -> user_id (the room's members)
    {prefix}user:{user}           set of the user's client ids
    {prefix}client:{client}       set of the presence hashes the client is in
    {prefix}where                 hash client_id -> node id (where it is connected)
    {prefix}nodes                 set of the live node ids
    {prefix}node:{node}:alive     refreshed by the node with a TTL
    {prefix}node:{node}:clients   hash client_id -> user_id (the node's connections)
    {prefix}node:{node}           the node's pub/sub channel (user-directed frames)

A node that stops refreshing its ``alive`` key is dead once the key expires:
any surviving node's sweep (``REAP``) removes its connections from every room,
user and the ``where`` hash, atomically, and says who left.
"""

from __future__ import annotations

# shared Lua helpers: the key of a client / user from the prefix
_KEYS = """
local function part(s) return #s .. ':' .. s end
local function client_key(prefix, c) return prefix .. 'client:' .. part(c) end
local function user_key(prefix, u) return prefix .. 'user:' .. part(u) end
local function forget(prefix, c, u, left)
  local ck = client_key(prefix, c)
  for _, room in ipairs(redis.call('SMEMBERS', ck)) do
    if redis.call('HDEL', room, c) == 1 and left then
      table.insert(left, room); table.insert(left, u); table.insert(left, c)
    end
  end
  redis.call('DEL', ck)
  redis.call('SREM', user_key(prefix, u), c)
  redis.call('HDEL', prefix .. 'where', c)
end
"""

# KEYS: presence hash, client set ; ARGV: client id, user id, max size (-1: none) -> 1 joined
JOIN = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
local max = tonumber(ARGV[3])
if max >= 0 and redis.call('HLEN', KEYS[1]) >= max then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], KEYS[1])
return 1
"""

# KEYS: user set, where hash, node clients hash ; ARGV: client id, user id, node id
CONNECT = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 1
"""

# KEYS: node clients hash ; ARGV: prefix, client id, user id
DISCONNECT = _KEYS + """
forget(ARGV[1], ARGV[2], ARGV[3], nil)
redis.call('HDEL', KEYS[1], ARGV[2])
return 1
"""

# KEYS: nodes set, alive key, reaped set ; ARGV: node id, ttl ms
# -> {1 if the node was not registered (first beat, or Redis lost it, or a survivor reaped it:
#    the node re-asserts its presence), then the ids of its connections a survivor reaped}
HEARTBEAT = """
redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[2]))
local result = {redis.call('SADD', KEYS[1], ARGV[1])}
if result[1] == 1 then
  for _, client in ipairs(redis.call('SMEMBERS', KEYS[3])) do table.insert(result, client) end
  redis.call('DEL', KEYS[3])
end
return result
"""

# KEYS: nodes set ; ARGV: prefix, node id to skip (the caller; '' for none)
# -> flat list: dead node id count, then (room presence key, user, client) triples of who left,
#    and ('', user, client) for each connection of a dead node (it disconnected)
REAP = _KEYS + """
local prefix = ARGV[1]
local left, dead = {}, 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local base = prefix .. 'node:' .. part(node)
  if node ~= ARGV[2] and redis.call('EXISTS', base .. ':alive') == 0 then
    local clients = redis.call('HGETALL', base .. ':clients')
    for i = 1, #clients, 2 do
      forget(prefix, clients[i], clients[i + 1], left)
      table.insert(left, ''); table.insert(left, clients[i + 1]); table.insert(left, clients[i])
      -- if the node was only unreachable, its heartbeat finds these and closes them
      redis.call('SADD', base .. ':reaped', clients[i])
    end
    if #clients > 0 then redis.call('EXPIRE', base .. ':reaped', 86400) end
    redis.call('DEL', base .. ':clients')
    redis.call('SREM', KEYS[1], node)
    dead = dead + 1
  end
end
table.insert(left, 1, dead)
return left
"""

# KEYS: nodes set, alive key ; ARGV: prefix, node id, '1' to retire the node too (it stops),
#       '' to clear only its connections (before writing them back after an outage)
CLEAR_NODE = _KEYS + """
local base = ARGV[1] .. 'node:' .. part(ARGV[2])
local clients = redis.call('HGETALL', base .. ':clients')
for i = 1, #clients, 2 do forget(ARGV[1], clients[i], clients[i + 1], nil) end
redis.call('DEL', base .. ':clients')
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[1], ARGV[2])
end
return 1
"""

# KEYS: user set, where hash ; ARGV: prefix, client id ('' = every client of the user),
#       payload, node id to skip -> the number of nodes the payload was published to
ROUTE = """
local clients
if ARGV[2] ~= '' then clients = {ARGV[2]} else clients = redis.call('SMEMBERS', KEYS[1]) end
local seen, sent = {}, 0
for _, c in ipairs(clients) do
  local node = redis.call('HGET', KEYS[2], c)
  if node and node ~= ARGV[4] and not seen[node] then
    seen[node] = true
    redis.call('PUBLISH', ARGV[1] .. 'node:' .. #node .. ':' .. node, ARGV[3])
    sent = sent + 1
  end
end
return sent
"""
