"""Per-client publish rate limits on the ``limits`` library.

A publish is checked against every limit that applies to it: the global
``default``, the global per-room and per-event limits, and the room's own
``rate_limit`` (a string, or a :class:`RateLimit` with its own ``default`` and
``events``). Budgets belong to the sender's user id (default), connection or
IP, and live in ``memory://`` (one process) or ``redis://...`` (shared by every
worker). Events the server triggers are never limited. Over a limit the
sender gets ``RATE_LIMITED`` with ``retry_after`` in seconds.

With ``sliding-window`` limits in the Redis broker's own Redis, the limiter
hands the publisher a :class:`LimitCheck` instead (:meth:`EventLimiter.fused_check`)
and the broker checks and counts the limits in the publish's own script
(``brokers/redis_limits.py``), with the same keys and arithmetic as ``limits``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from ..brokers.base import FusedLimits, LimitCheck, LimitRefused
from ..core.config import RateLimit
from ..core.errors import RateLimited
from ..rooms.registry import Room

#: a hung Redis fails a check (UNAVAILABLE) instead of holding the publish forever
REDIS_TIMEOUT = 2.0


def _storage_url(url: str) -> tuple[str, dict[str, Any]]:
    """``memory://`` / ``redis://...`` as the async storage of ``limits`` (on redis-py)."""
    if url.startswith("async+"):
        url = url.removeprefix("async+")
    if url.startswith(("redis://", "rediss://", "unix://")):
        return "async+" + url, {"implementation": "redispy", "socket_timeout": REDIS_TIMEOUT,
                                "socket_connect_timeout": REDIS_TIMEOUT}
    return "async+" + url, {}


_SCOPES = {"all": "every publish", "room": "this room", "event": "this event",
           "connect": "connection attempts", "auth": "failed authentications",
           "instances": "new room-family instances"}


@dataclass(frozen=True, slots=True)
class Sender:
    """Who a budget belongs to."""

    user_id: str
    client_id: str | None
    ip: str | None


def _rate_limited(scope: str, text: str, wait: float) -> RateLimited:
    retry_after = max(round(wait, 3), 0.001)
    return RateLimited(
        f"over the limit of {text} ({_SCOPES.get(scope.split(':')[0], scope)}); "
        f"retry in {retry_after:g} s",
        retry_after=retry_after, limit=text,
    )


class Limiter(Protocol):
    """What publishes and connection attempts are checked with: the seam a test or an
    application replaces through ``dialogue.publish_tools`` (``PublishTools(limiter, ...)``)."""

    @property
    def max_violations(self) -> int | None:
        """Refusals within ``violation_window`` that close a WebSocket (4008); None: never."""
        ...

    @property
    def violation_window(self) -> float: ...

    async def check(self, room: Room, event: str, sender: Sender) -> None:
        """Count one publish; raise ``RateLimited`` when it is over a limit."""
        ...

    async def check_connection(self, ip: str | None) -> None:
        """Count one connection attempt; raise ``RateLimited`` when it is over the limit."""
        ...

    async def check_auth(self, ip: str | None) -> None:
        """Before authenticating: raise ``RateLimited`` when ``ip`` failed too often."""
        ...

    async def auth_failed(self, ip: str | None) -> None:
        """Count one failed authentication of ``ip``."""
        ...


class EventLimiter:
    """Checks publishes against the configured limits (the default :class:`Limiter`)."""

    def __init__(self, config: RateLimit) -> None:
        self.config = config
        url, options = _storage_url(config.storage)
        self._storage = storage_from_string(url, key_prefix=config.prefix, **options)
        strategy = (MovingWindowRateLimiter if config.strategy == "moving-window"
                    else SlidingWindowCounterRateLimiter)
        self._limiter = strategy(self._storage)
        self._parsed: dict[str, RateLimitItem] = {}
        self._fused = False

    def fuse_with(self, broker: object) -> bool:
        """Let ``broker`` check the publish limits inside its publish when it can reach this
        storage (:meth:`fused_check`); only the ``sliding-window`` counters are fused."""
        self._fused = (self.config.strategy == "sliding-window" and isinstance(broker, FusedLimits)
                       and broker.fuses_limits(self.config.storage))
        return self._fused

    @property
    def max_violations(self) -> int | None:
        return self.config.max_violations

    @property
    def violation_window(self) -> float:
        return self.config.violation_window

    def _item(self, text: str) -> RateLimitItem:
        item = self._parsed.get(text)
        if item is None:
            item = self._parsed[text] = parse(text)
        return item

    def limits_for(self, room: Room, event: str) -> list[tuple[str, str]]:
        """(scope, limit) pairs that apply to ``event`` in ``room``."""
        c = self.config
        found: list[tuple[str, str]] = []
        if c.default:
            found.append(("all", c.default))
        if room.id in c.rooms:
            found.append((f"room:{room.id}", c.rooms[room.id]))
        if event in c.events:
            found.append((f"event:{event}", c.events[event]))
        own = room.config.rate_limit
        if isinstance(own, str):
            found.append((f"room:{room.id}:own", own))
        elif own is not None:
            if own.default:
                found.append((f"room:{room.id}:own", own.default))
            if event in own.events:
                found.append((f"room:{room.id}:event:{event}", own.events[event]))
        return found

    def _key(self, sender: Sender) -> str:
        if self.config.key == "connection" and sender.client_id:
            return f"c:{sender.client_id}"
        if self.config.key == "ip" and sender.ip:
            return f"ip:{sender.ip}"
        return f"u:{sender.user_id}"

    def fused_check(self, room: Room, event: str, sender: Sender) -> LimitCheck | None:
        """The limits of a publish as the broker checks them in its own publish (``limits``'
        sliding-window keys); None when not fused with the broker (then :meth:`check`)."""
        if not self._fused:
            return None
        key, prefix = self._key(sender), self.config.prefix
        found = self.limits_for(room, event)
        keys: list[str] = []
        args: list[int] = []
        for scope, text in found:
            item = self._item(text)
            current = f"{prefix}:{{{item.key_for(scope, key)}}}"
            keys += (current + "/-1", current)
            args += (item.amount, item.get_expiry())
        return LimitCheck(keys, args, found)

    def refused(self, check: LimitCheck, refusal: LimitRefused) -> RateLimited:
        """The broker's refusal of a fused check, as :meth:`check` words it."""
        scope, text = check.limits[refusal.index]
        return _rate_limited(scope, text, refusal.retry_after)

    async def check(self, room: Room, event: str, sender: Sender) -> None:
        """Count the publish against every applicable limit; ``RATE_LIMITED`` if over one."""
        key = self._key(sender)
        applicable = [(scope, text, self._item(text)) for scope, text in self.limits_for(room, event)]
        if len(applicable) == 1:  # one limit: a refused hit costs nothing, one round trip
            scope, text, item = applicable[0]
            if not await self._limiter.hit(item, scope, key):
                await self._refuse(scope, text, item, key)
            return
        # a refused publish costs no budget: test every limit first, then count it in each
        for scope, text, item in applicable:
            if not await self._limiter.test(item, scope, key):
                await self._refuse(scope, text, item, key)
        for scope, text, item in applicable:
            if not await self._limiter.hit(item, scope, key):  # lost a race for the last unit
                await self._refuse(scope, text, item, key)

    async def check_connection(self, ip: str | None) -> None:
        """Count a connection attempt (``/ws``, ``/sse``) of ``ip``; ``RATE_LIMITED`` if over."""
        await self._per_ip(self.config.connections, "connect", ip, count=True)

    async def check_auth(self, ip: str | None) -> None:
        """Refuse ``ip`` (``RATE_LIMITED``) while its failed authentications are over the limit."""
        await self._per_ip(self.config.auth_failures, "auth", ip, count=False)

    async def auth_failed(self, ip: str | None) -> None:
        """Count one failed authentication of ``ip``."""
        text = self.config.auth_failures
        if text is not None and ip:
            await self._limiter.hit(self._item(text), "auth", f"ip:{ip}")

    async def check_new_instance(self, user_id: str) -> None:
        """Count one room-family instance ``user_id`` brings to life on this node;
        ``RATE_LIMITED`` when over ``RateLimit.instances``."""
        text = self.config.instances
        if text is None:
            return
        item, key = self._item(text), f"u:{user_id}"
        if not await self._limiter.hit(item, "instances", key):
            await self._refuse("instances", text, item, key)

    async def _per_ip(self, text: str | None, scope: str, ip: str | None, *, count: bool) -> None:
        """Refuse ``ip`` if it is over ``text`` in ``scope``; ``count``: this is one more."""
        if text is None or not ip:
            return
        item, key = self._item(text), f"ip:{ip}"
        allowed = self._limiter.hit if count else self._limiter.test
        if not await allowed(item, scope, key):
            await self._refuse(scope, text, item, key)

    async def _refuse(self, scope: str, text: str, item: RateLimitItem, key: str) -> None:
        stats = await self._limiter.get_window_stats(item, scope, key)
        raise _rate_limited(scope, text, stats.reset_time - time.time())

    async def reset(self) -> None:
        """Forget every budget (tests, or an operator clearing a storm)."""
        result: Any = self._storage.reset()
        if hasattr(result, "__await__"):
            await result

