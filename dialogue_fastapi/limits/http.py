"""Request limits on the REST routes, on slowapi.

``RateLimit(http={"create_room": "5/minute", "default": "120/minute"})`` limits
the named routes (``default``: every limited route without its own entry, each
with its own budget). A request is counted after authentication, so the budget
is the user's (``key="user"`` or ``"connection"``) or the client IP's
(``key="ip"``, and for requests without an identity). Over a limit the route
answers 429 ``RATE_LIMITED`` with ``retry_after``, ``limit`` and a
``Retry-After`` header; an answer within the limits carries slowapi's
``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` headers.

slowapi talks to its storage synchronously: with ``redis://`` storage the
check runs in a worker thread, so the event loop serves other requests and
connections meanwhile; socket timeouts make an unreachable Redis answer
``UNAVAILABLE`` quickly. With ``memory://`` it runs on the loop (no I/O).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, ParamSpec, TypeVar, cast

import anyio.to_thread
from limits import parse
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from starlette.requests import Request
from starlette.responses import Response

from ..core.config import RateLimit
from ..core.errors import RateLimited
from ..core.peers import client_ip

#: ``request.state`` attribute the REST routes' authentication sets
USER_STATE: Final = "dialogue_user_id"

_STRATEGIES: Final = {"sliding-window": "sliding-window-counter", "moving-window": "moving-window"}
# a blocking call on the event loop must not hang it: fail fast, the route answers UNAVAILABLE
_REDIS_OPTIONS: Final[dict[str, Any]] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}

P = ParamSpec("P")
R = TypeVar("R")


def _peer(request: Request) -> str:
    return client_ip(request) or "unknown"


class HttpLimits:
    """The slowapi ``Limiter`` of one Dialogue's REST routes."""

    def __init__(self, config: RateLimit) -> None:
        self.config = config
        storage = config.storage.removeprefix("async+")
        remote = storage.startswith(("redis://", "rediss://", "unix://"))
        self._blocking = remote  # its checks wait on the network: off the event loop
        self.limiter = Limiter(
            key_func=self._key,
            storage_uri=storage,
            # typed as str by slowapi, handed to redis-py as they are
            storage_options=cast(dict[str, str], dict(_REDIS_OPTIONS) if remote else {}),
            strategy=_STRATEGIES[config.strategy],
            key_prefix=f"{config.prefix}:http",
            headers_enabled=True,
            key_style="endpoint",
        )

    def limit_of(self, route: str) -> str | None:
        return self.config.http.get(route) or self.config.http.get("default")

    def _key(self, request: Request) -> str:
        user = getattr(request.state, USER_STATE, None)
        if self.config.key != "ip" and user is not None:
            return f"u:{user}"
        return f"ip:{_peer(request)}"

    def guard(self, route: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorate the endpoint of ``route`` (which takes ``request`` and ``response``)
        with its limit, if it has one; refusals become ``RATE_LIMITED``."""
        text = self.limit_of(route)

        def decorate(endpoint: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            if text is None:
                return endpoint
            check = self._check(route, endpoint.__name__, text)

            @functools.wraps(endpoint)
            async def checked(*args: P.args, **kwargs: P.kwargs) -> R:
                request, response = kwargs["request"], kwargs["response"]
                assert isinstance(request, Request) and isinstance(response, Response)
                refusal = (await anyio.to_thread.run_sync(check, request, response)
                           if self._blocking else check(request, response))
                if refusal is not None:
                    raise refusal
                return await endpoint(*args, **kwargs)

            return checked

        return decorate

    def _check(self, route: str, endpoint: str, text: str
               ) -> Callable[[Request, Response], RateLimited | None]:
        """slowapi's check of one endpoint, synchronous: counts the request, sets the
        X-RateLimit headers on ``response``; the refusal if it is over ``text``."""

        def counted(request: Request, response: Response) -> None:
            return None

        # slowapi files limits under the function's name: one per endpoint, or the two
        # endpoints of a route name would each count every request twice
        counted.__name__ = counted.__qualname__ = f"limit_{route}_{endpoint}"
        limited = self.limiter.shared_limit(text, scope=route)(counted)  # one budget per name

        def check(request: Request, response: Response) -> RateLimited | None:
            try:
                limited(request=request, response=response)
            except RateLimitExceeded:
                return self._refusal(request, text)
            return None

        return check

    def _refusal(self, request: Request, text: str) -> RateLimited:
        item, keys = request.state.view_rate_limit  # set by slowapi for the failed limit
        return self._refused(item, keys, text, "this route")

    def _refused(self, item: Any, keys: Sequence[str], text: str, what: str) -> RateLimited:
        """``RATE_LIMITED`` with the wait until the window of ``item`` frees a unit."""
        reset_time, _remaining = self.limiter.limiter.get_window_stats(item, *keys)
        retry_after = max(round(reset_time - time.time(), 3), 0.001)
        return RateLimited(f"over the limit of {text} ({what}); retry in {retry_after:g} s",
                           retry_after=retry_after, limit=text)

    async def count(self, route: str, user_id: str | None, ip: str | None) -> None:
        """Count one use of ``route`` made outside HTTP (a WebSocket command) in the same
        budget as the route's requests; raises ``RATE_LIMITED`` over the limit."""
        text = self.limit_of(route)
        if text is None:
            return
        item = parse(text)
        key = f"u:{user_id}" if self.config.key != "ip" and user_id is not None else f"ip:{ip}"
        args = (f"{self.config.prefix}:http", key, route)  # slowapi's key for a shared limit

        def hit() -> bool:
            return bool(self.limiter.limiter.hit(item, *args))

        if await anyio.to_thread.run_sync(hit) if self._blocking else hit():
            return
        raise self._refused(item, args, text, route)

    def reset(self) -> None:
        """Forget every budget (tests, or an operator clearing a storm)."""
        self.limiter.reset()

