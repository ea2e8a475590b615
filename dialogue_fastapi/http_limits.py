"""Request limits on the REST routes, on slowapi.

``RateLimit(http={"create_room": "5/minute", "default": "120/minute"})`` limits
the named routes (``default``: every limited route without its own entry, each
with its own budget). A request is counted after authentication, so the budget
is the user's (``key="user"`` or ``"connection"``) or the client IP's
(``key="ip"``, and for requests without an identity). Over a limit the route
answers 429 ``RATE_LIMITED`` with ``retry_after``, ``limit`` and a
``Retry-After`` header; an answer within the limits carries slowapi's
``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` headers.

slowapi talks to its storage synchronously: with ``redis://`` storage each
limited request makes two short blocking round trips on the event loop, with
socket timeouts so that an unreachable Redis answers ``UNAVAILABLE`` instead of
hanging the loop.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, ParamSpec, TypeVar, cast

from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from starlette.requests import Request

from .config import RateLimit
from .errors import RateLimited

#: ``request.state`` attribute the REST routes' authentication sets
USER_STATE: Final = "dialogue_user_id"

_STRATEGIES: Final = {"sliding-window": "sliding-window-counter", "moving-window": "moving-window"}
# a blocking call on the event loop must not hang it: fail fast, the route answers UNAVAILABLE
_REDIS_OPTIONS: Final[dict[str, Any]] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}

P = ParamSpec("P")
R = TypeVar("R")


def _peer(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class HttpLimits:
    """The slowapi ``Limiter`` of one Dialogue's REST routes."""

    def __init__(self, config: RateLimit) -> None:
        self.config = config
        storage = config.storage.removeprefix("async+")
        remote = storage.startswith(("redis://", "rediss://", "unix://"))
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
            limited = self.limiter.shared_limit(text, scope=route)(endpoint)  # one budget per name

            @functools.wraps(endpoint)
            async def checked(*args: P.args, **kwargs: P.kwargs) -> R:
                try:
                    result: R = await limited(*args, **kwargs)
                except RateLimitExceeded:
                    request = kwargs["request"]
                    assert isinstance(request, Request)
                    raise self._refusal(request, text) from None
                return result

            return checked

        return decorate

    def _refusal(self, request: Request, text: str) -> RateLimited:
        item, keys = request.state.view_rate_limit  # set by slowapi for the failed limit
        reset_time, _remaining = self.limiter.limiter.get_window_stats(item, *keys)
        retry_after = max(round(reset_time - time.time(), 3), 0.001)
        return RateLimited(f"over the limit of {text} (this route); retry in {retry_after:g} s",
                           retry_after=retry_after, limit=text)

    def reset(self) -> None:
        """Forget every budget (tests, or an operator clearing a storm)."""
        self.limiter.reset()

