"""Connection tickets: short-lived, single-use credentials for ``/ws`` and ``/sse``.

A browser cannot set headers on a WebSocket or an ``EventSource``, so its
credentials would travel in the URL, where proxies and access logs keep them.
``POST /tickets`` (authenticated like any REST route) hands out a random
ticket instead; ``/ws?ticket=...`` and ``/sse?ticket=...`` redeem it in place
of calling ``authenticate``. A ticket is valid once, for ``ticket_ttl``
seconds; an unknown, used or expired one is refused like bad credentials.

Where tickets live: with the Redis broker in Redis (``SET ... PX`` on issue,
``GETDEL`` on redemption), so a ticket issued by one worker is redeemed on any
other, exactly once and expired by Redis itself; with any other broker in the
process's memory (the memory broker is single-process anyway). Random tickets
in shared storage were chosen over HMAC-signed ones: single use needs shared
state in any case, and this needs no secret to configure and rotate.
"""

from __future__ import annotations

import inspect
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, Protocol

import orjson
from fastapi import Depends, Query
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from ..core.errors import CloseCode, Unavailable
from ..core.outages import is_outage
from ..core.types import Identity
from .dependency import AuthResult
from .gate import UNAVAILABLE_REASON, _refuse_websocket

INVALID_TICKET = "invalid, used or expired ticket"
_TICKET = "dialogue_ticket_"
_CONN = "dialogue_ticket_connection_"


class TicketStore(Protocol):
    """Issues and redeems connection tickets."""

    ttl: float

    async def issue(self, identity: Identity) -> str:
        """A new ticket for ``identity``, valid once for ``ttl`` seconds."""
        ...

    async def redeem(self, ticket: str) -> Identity | None:
        """The ticket's identity, consuming it; None when unknown, used or expired."""
        ...


def _new_ticket() -> str:
    return secrets.token_urlsafe(24)


class MemoryTickets:
    """Tickets of one process; expired ones are dropped as new ones are issued."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._tickets: OrderedDict[str, tuple[Identity, float]] = OrderedDict()

    async def issue(self, identity: Identity) -> str:
        now = self._clock()
        while self._tickets:  # one ttl for all: insertion order is expiry order
            oldest = next(iter(self._tickets.values()))
            if oldest[1] > now:
                break
            self._tickets.popitem(last=False)
        ticket = _new_ticket()
        self._tickets[ticket] = (identity, now + self.ttl)
        return ticket

    async def redeem(self, ticket: str) -> Identity | None:
        found = self._tickets.pop(ticket, None)
        if found is None or found[1] <= self._clock():
            return None
        return found[0]


class RedisTickets:
    """Tickets in Redis, shared by every node; Redis expires them."""

    def __init__(self, client: Callable[[], Any], prefix: str, ttl: float) -> None:
        self.ttl = ttl
        self._client = client  # the broker's client, which exists once the broker started
        self._prefix = f"{prefix}ticket:"

    async def issue(self, identity: Identity) -> str:
        ticket = _new_ticket()
        value = orjson.dumps({"user_id": identity.user_id, "meta": identity.meta})
        await self._client().set(self._prefix + ticket, value, px=max(1, int(self.ttl * 1000)))
        return ticket

    async def redeem(self, ticket: str) -> Identity | None:
        value = await self._client().getdel(self._prefix + ticket)
        if value is None:
            return None
        data = orjson.loads(value)
        return Identity(data["user_id"], data.get("meta") or {})


def tickets_for(broker: Any, ttl: float) -> TicketStore:
    """Redis-backed when ``broker`` has a redis-py client (``.redis``, as the Redis broker
    does), else in memory."""
    if isinstance(getattr(type(broker), "redis", None), property):
        return RedisTickets(lambda: broker.redis, str(getattr(broker, "prefix", "dialogue:")), ttl)
    return MemoryTickets(ttl)


def _connection(conn: HTTPConnection) -> HTTPConnection:
    return conn


def accept_tickets(auth: Callable[..., Any], store: TicketStore) -> Callable[..., Any]:
    """``auth`` (a dependency returning :class:`AuthResult`) that first looks at a ``ticket``
    query parameter: given, it is redeemed and the application's ``authenticate`` is not
    called; absent, ``auth`` runs as before."""

    async def ticketed(**kwargs: Any) -> AuthResult:
        conn: HTTPConnection = kwargs.pop(_CONN)
        ticket = kwargs.pop(_TICKET)
        if ticket is None:
            result: AuthResult = await auth(**kwargs)
            return result
        try:
            identity = await store.redeem(ticket)
        except Exception as exc:  # Redis away: retry later, not "bad credentials"
            if not is_outage(exc):
                raise
            if isinstance(conn, WebSocket):
                raise await _refuse_websocket(conn, CloseCode.TRY_AGAIN_LATER,
                                              UNAVAILABLE_REASON) from None
            raise Unavailable(UNAVAILABLE_REASON) from None
        return AuthResult(identity) if identity is not None else AuthResult(None, INVALID_TICKET)

    own = inspect.signature(auth, eval_str=True)
    # a sub-dependency: FastAPI hands the connection to one HTTPConnection parameter only
    conn = inspect.Parameter(_CONN, inspect.Parameter.KEYWORD_ONLY,
                             annotation=Annotated[HTTPConnection, Depends(_connection)])
    ticket = inspect.Parameter(
        _TICKET, inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[str | None, Query(
            alias="ticket", description="a connection ticket from POST /tickets")],
    )
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own.parameters.values()]
    # FastAPI reads the ticket and, for the fallback, auth's own parameters from this
    ticketed.__signature__ = own.replace(  # type: ignore[attr-defined]
        parameters=[conn, ticket, *params], return_annotation=AuthResult)
    return ticketed
