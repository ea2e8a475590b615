"""``redis+cluster://``: the Redis broker on a Redis Cluster (Redis >= 7).

Everything the single-Redis broker does, spread over the cluster's shards:

- a room's keys and its channel share one hash slot (the room's
  length-prefixed name is the hash tag: ``{prefix}room:{5:lobby}:seq``), so
  the publish script (idempotency, seq, stream, history, publish) is one
  atomic script on the master that owns the room;
- room channels are sharded channels: the script ends with ``SPUBLISH``, and
  each node reads them with one connection per master it needs
  (``ShardedSubscriber``), following slots that move or fail over;
- the control channel (``{prefix}{cluster}``) and each node's own channel are
  sharded channels too; frames for a user go to the nodes found in the user's
  hash, one ``SPUBLISH`` per node;
- presence and node liveness use one slot per room, user, node and one for the
  set of live nodes (``ClusterPresence``), so no script or transaction needs
  keys in two slots;
- commands go through redis-py's ``RedisCluster`` client, which follows
  ``MOVED`` / ``ASK`` redirections and refreshes the slot map after a failover.

Redis Cluster replicates asynchronously: a master that dies before its
replica received its latest writes loses them. The subscriber notices when
the shard that took over a room does not hold the last event it delivered,
and the room starts a new epoch (``RedisBroker.diverged``): its members
resync and clients recovering from the lost positions get
``recovered: false`` rather than a silent gap (``docs/scaling.md``).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff

from .base import EventSink
from .redis import RedisBroker
from .redis_cluster_presence import ClusterPresence
from .redis_options import split_options
from .redis_presence import RedisPresence
from .redis_shards import ShardedSubscriber
from .redis_subscriber import Subscriber, SubscriberChannels

SCHEMES = ("redis+cluster://", "rediss+cluster://")
PIPELINE_ROOM = 8  # connections per master kept for pipelines, beyond the commands' limit


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """``redis+cluster://[user:password@]host:port[,host:port...]`` -> the seed nodes and
    the client's options (credentials, TLS)."""
    scheme, _, rest = url.partition("://")
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    auth, _, hosts = netloc.rpartition("@")
    options: dict[str, Any] = {}
    if auth:
        user, _, password = auth.partition(":")
        if user:
            options["username"] = unquote(user)
        if password:
            options["password"] = unquote(password)
    if scheme == "rediss+cluster":
        options["ssl"] = True
    nodes = []
    for item in hosts.split(","):
        parts = urlsplit(f"//{item.strip()}")
        if not parts.hostname:
            raise ValueError(f"broker URL {url!r}: {item!r} is not host:port")
        nodes.append((parts.hostname, parts.port or 6379))
    return nodes, options


class BoundedCluster(RedisCluster):
    """redis-py's cluster client fails a command at once (``MaxConnectionsError``) when all
    of a master's connections are busy; this one makes it wait for one instead, like the
    single-Redis broker's blocking pool (a burst of disconnects must not fail presence
    writes). Pipelines take one connection per master on top: the pool keeps room for them."""

    def __init__(self, *args: Any, concurrent: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._concurrent = asyncio.Semaphore(concurrent)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._concurrent:
            return await super().execute_command(*args, **kwargs)


class RedisClusterBroker(RedisBroker):
    """The Redis broker on a Redis Cluster: rooms spread over the shards by hash slot."""

    tagged = True
    publish_command = "SPUBLISH"

    def __init__(self, url: str, **kwargs: Any) -> None:
        base, own = split_options(url)
        self.seeds, self._auth = cluster_nodes(base)
        kwargs.setdefault("prefix", own.get("prefix"))
        kwargs.setdefault("node_ttl", own.get("node_ttl"))
        super().__init__(url, **kwargs)
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError("on a Redis Cluster the key prefix cannot hold '{' or '}': the "
                             "room's name is the hash tag")
        self._control_channel = f"{self.prefix}{{cluster}}"

    def _new_presence(self) -> RedisPresence:
        return ClusterPresence(self.prefix, self.node_id)

    async def _connect(self) -> None:
        retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), self._retries)
        cluster = BoundedCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.seeds],
            socket_timeout=self.command_timeout, socket_connect_timeout=3, retry=retry,
            max_connections=self.max_connections + PIPELINE_ROOM, concurrent=self.max_connections,
            **self._auth,
        )
        await cluster.initialize()
        self._redis = cluster

    def _shard_client(self, host: str, port: int) -> Redis:
        """The sharded pub/sub connection to one master: it fails at once (no retry), so
        that the subscriber follows the slots instead of waiting on a dead master."""
        return Redis(host=host, port=port, socket_connect_timeout=3,
                     health_check_interval=int(self._health_interval), retry=Retry(NoBackoff(), 0),
                     client_name=f"dialogue-sub-{self.node_id}", **self._auth)

    def _new_subscriber(self, channels: SubscriberChannels, on_event: EventSink) -> Subscriber:
        return ShardedSubscriber(self._redis, self._shard_client, channels, on_event, self,
                                 self._poll)

    async def _broadcast(self, payload: bytes) -> None:
        await self.redis.spublish(self._control_channel, payload)

    async def _to_user(self, user: str, client: str, payload: bytes) -> None:
        presence = self.presence
        assert isinstance(presence, ClusterPresence)
        for node in sorted(await presence.nodes_of(user, client or None) - {self.node_id}):
            await self.redis.spublish(presence.node_channel(node), payload)

    async def _held_for_room(self, room: str) -> float:
        """How long the master that owns the room has been up (a master restarted empty
        has just started; a promoted replica holds the data it replicated)."""
        node = self.redis.get_node_from_key(self._keys(room).seq)
        info = await self.redis.info("server", target_nodes=node)
        return float(info.get("uptime_in_seconds", 0))
