"""Node liveness: each node refreshes a key with a TTL and sweeps for dead nodes.

Every ``ttl / 3`` seconds a node sets its ``alive`` key (with the TTL) and
registers in the node set; then it runs the sweep, which removes the
connections of every node whose key has expired from every room and user, in
one script (so exactly one survivor reports each departure). A crashed node's
connections therefore leave presence within ``ttl + ttl / 3`` seconds.

If the heartbeat finds this node unregistered after it had registered, either
Redis restarted and lost everything (the node writes its presence back), or
the node was unreachable (stopped, cut off) for longer than the TTL and a
survivor reaped it: that survivor already told the cluster its connections
left and ran their hooks, so the node closes those connections (they
reconnect and join again, through ``max_size`` and the hooks) and writes back
only the ones opened since. If a leave or a disconnect could not be written
during an outage, it rewrites its own entries from its in-memory mirror on the
next beat that gets through.

A node whose own heartbeat failed does not sweep during the first ``ttl``
after its beats get through again. An outage of Redis (a restart that keeps
the data, a failover of the shard that holds the liveness keys) silences
every node at once, so every liveness key may have expired when Redis is
back; the first node to beat would otherwise take all the others for dead
and reap their live connections. Within that ``ttl`` every live node beats
again (every ``ttl / 3``); a node that really died during the outage is
reaped one ``ttl`` later than usual.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..core.background import BackgroundTask
from .redis_presence_scripts import HEARTBEAT
from .redis_scripts import text

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .redis_presence import Reaped, RedisPresence

logger = logging.getLogger("dialogue_fastapi")
LostSink = Callable[["Reaped"], Awaitable[None]]
EvictedSink = Callable[[list[str]], Awaitable[None]]


class NodeLiveness:
    """The heartbeat and the sweep of one node."""

    def __init__(self, redis: Redis, presence: RedisPresence, ttl: float, on_lost: LostSink,
                 on_evicted: EvictedSink) -> None:
        self._redis, self._presence, self.ttl = redis, presence, ttl
        self._on_lost, self._on_evicted = on_lost, on_evicted
        self._beat = redis.register_script(HEARTBEAT)
        self._registered = False
        self._failed = False  # the last beat failed (Redis unreachable)
        self._sweep_after = 0.0  # monotonic time before which this node does not sweep
        self._task = BackgroundTask("dialogue-redis-liveness", self._loop)

    async def start(self) -> None:
        try:
            await self.tick()
        except Exception as exc:  # Redis is down: the task keeps trying
            logger.error("redis heartbeat failed (%s); retrying", exc)
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the next beat retries; the subscriber logs too
                logger.error("redis heartbeat failed (%s: %s)", type(exc).__name__, exc)

    async def tick(self) -> None:
        """One heartbeat, then one sweep (none in the first ``ttl`` after a failed beat)."""
        presence = self._presence
        try:
            beat = await self._beat(keys=[presence.nodes_key, presence.alive_key,
                                          presence.reaped_key],
                                    args=[presence.node_id, int(self.ttl * 1000)])
        except Exception:
            self._failed = True
            raise
        if self._failed:  # back after an outage: the others may not have beaten yet
            self._failed = False
            self._sweep_after = time.monotonic() + self.ttl
        added = bool(beat[0])
        evicted = [text(c) for c in beat[1:]]
        if evicted:  # only when a survivor reaped this node, which is alive after all
            logger.warning("this node was unreachable longer than %.0fs and a survivor removed "
                           "its %d connections; closing them so that they reconnect",
                           self.ttl, len(evicted))
            presence.forget_connections(evicted)
            await self._on_evicted(evicted)
        if added and self._registered:
            count = await presence.reassert()
            logger.warning("this node was missing from redis (restart, or unreachable longer "
                           "than %.0fs); wrote back %d connections", self.ttl, count)
        elif presence.stale:
            count = await presence.reassert(clear=True)
            logger.warning("leaves or disconnects did not reach redis during an outage; "
                           "rewrote this node's %d connections", count)
        self._registered = True
        if time.monotonic() < self._sweep_after:
            return
        reaped = await presence.reap()
        if reaped.dead:
            logger.warning("removed %d connections of %d dead node(s) from presence",
                           len(reaped.gone), reaped.dead)
            if reaped.gone:
                await self._on_lost(reaped)
