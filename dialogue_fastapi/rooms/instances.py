"""The room-family instances this node holds: their cap, who may bring new ones to life, and
their eviction once idle.

An instance is *live* on this node from its first use (a join, a read, a publish) until it
has had no local member and no use for its family's ``idle_ttl``; then the sweep drops
what the node holds of it: its resolved room, its position and hot events in the memory
broker, the writer's cached epoch. Nothing shared is dropped: Redis keeps the room's keys,
the store its events, so seq and epoch continue when the instance is used again (with the
memory broker and no store, it starts a new epoch: recovery answers ``recovered: false``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, runtime_checkable

from ..brokers.base import Broker
from ..core.background import BackgroundTask
from ..core.errors import Unavailable
from ..node.hub import Hub
from .registry import Room, RoomRegistry

logger = logging.getLogger("dialogue_fastapi")

NewInstanceCheck = Callable[[str], Awaitable[None]]  # user id -> raises RateLimited


@runtime_checkable
class Evicting(Protocol):
    """A broker that holds rooms in this process and can forget an idle one."""

    def evict(self, room: str) -> bool:
        """Forget the room's position and hot events; False while it has members."""
        ...


class PendingWrites(Protocol):
    """The writer, as the sweep sees it."""

    def pending_rooms(self) -> set[str]:
        """Rooms with events still waiting to be written."""
        ...

    def forget(self, room: str) -> None:
        """Drop what the writer caches about the room."""
        ...


class LiveInstances:
    """Live family instances by idle TTL, each ordered least recently used first."""

    def __init__(
        self, max_instances: int, hub: Hub, broker: Broker, registry: RoomRegistry,
        writer: PendingWrites | None, check_new: NewInstanceCheck | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_instances
        self._hub, self._broker, self._registry, self._writer = hub, broker, registry, writer
        self._check_new = check_new
        self._clock = clock
        self._by_ttl: dict[float | None, OrderedDict[str, float]] = {}
        self.evicted = 0
        ttls = [f.config.idle_ttl for f in registry.families() if f.config.idle_ttl is not None]
        self._sweeper = (BackgroundTask("dialogue-idle-instances", self._sweep_forever)
                         if ttls else None)
        self._interval = min(max(min(ttls) / 4, 0.05), 30.0) if ttls else 0.0

    def __len__(self) -> int:
        return sum(map(len, self._by_ttl.values()))

    def __contains__(self, room_id: str) -> bool:
        return any(room_id in used for used in self._by_ttl.values())

    async def hold(self, room: Room, user_id: str | None) -> None:
        """``room`` is used (``user_id``: by that user, None: by the application). A new
        instance counts against ``max_instances`` (UNAVAILABLE beyond) and the user's
        ``RateLimit.instances`` (RATE_LIMITED); a live one's idle clock starts again."""
        if room.family is None:
            return
        used = self._by_ttl.get(room.config.idle_ttl)
        if used is not None and room.id in used:
            used.move_to_end(room.id)
            used[room.id] = self._clock()
            return
        self._check_room_for_one_more()
        if user_id is not None and self._check_new is not None:
            await self._check_new(user_id)
            self._check_room_for_one_more()  # the check may have waited on Redis
        self.touch(room)

    def _check_room_for_one_more(self) -> None:
        if len(self) >= self._max and not self.sweep():
            raise Unavailable(f"this server holds {len(self)} room-family instances "
                              "(max_instances); try again later")

    def touch(self, room: Room) -> None:
        """Start the idle clock of ``room`` again (no check: the node already holds it)."""
        if room.family is None:
            return
        used = self._by_ttl.setdefault(room.config.idle_ttl, OrderedDict())
        used[room.id] = self._clock()
        used.move_to_end(room.id)

    def sweep(self) -> int:
        """Evict every instance idle longer than its TTL; returns how many went."""
        now = self._clock()
        busy: set[str] | None = None
        evicted = 0
        for ttl, used in self._by_ttl.items():
            if ttl is None:
                continue
            for room_id, last in list(used.items()):  # stops at the first one still in use
                if now - last < ttl:
                    break
                if busy is None:
                    busy = self._writer.pending_rooms() if self._writer is not None else set()
                if not self._evict(room_id, busy):
                    used.move_to_end(room_id)
                    used[room_id] = now
                    continue
                del used[room_id]
                evicted += 1
        self.evicted += evicted
        return evicted

    def _evict(self, room_id: str, busy: Iterable[str]) -> bool:
        if self._hub.local_members(room_id) or room_id in busy:
            return False
        if isinstance(self._broker, Evicting) and not self._broker.evict(room_id):
            return False
        self._registry.forget(room_id)
        if self._writer is not None:
            self._writer.forget(room_id)
        return True

    def start(self) -> None:
        if self._sweeper is not None:
            self._sweeper.start()

    async def stop(self) -> None:
        if self._sweeper is not None:
            await self._sweeper.stop()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                evicted = self.sweep()
            except Exception:
                logger.exception("evicting idle room-family instances failed")
                continue
            if evicted:
                logger.debug("evicted %d idle room-family instances", evicted)
