"""What a client IP must pass before ``authenticate`` runs.

Every route that authenticates (``/ws``, ``/sse``, the REST routes) takes its
:class:`AuthResult` through :func:`gate_auth`: first the IP's budget of failed
authentications (``RateLimit.auth_failures``) and, on ``/ws`` and ``/sse``, its
connection attempts (``RateLimit.connections``) are checked, so a flood of bad
credentials is refused without calling the application's ``authenticate``;
then a failed authentication is counted.

A refusal is ``RATE_LIMITED`` (HTTP 429 with ``Retry-After``); a WebSocket is
accepted and closed with 4008 and the reason, so that a browser can read them.
A limit that cannot be checked (its Redis storage is away) refuses with
``UNAVAILABLE`` (503, or close 1013) instead of waving the client through.
"""

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends
from starlette.exceptions import WebSocketException
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from ..core.errors import CloseCode, RateLimited, Unavailable
from ..core.metrics import Metrics
from ..core.outages import is_outage
from ..core.peers import client_ip
from ..publish.submission import PublishTools
from .dependency import AuthResult

logger = logging.getLogger("dialogue_fastapi")

UNAVAILABLE_REASON = "a backend is unavailable; retry later"


async def _refuse_websocket(websocket: WebSocket, code: int, reason: str) -> WebSocketException:
    """Accept first: a close before the upgrade reaches a browser as 1006, without a reason."""
    await websocket.accept()
    return WebSocketException(code, reason[:120])


def transport_of(conn: HTTPConnection, connection: bool) -> str:
    """The ``transport`` label of a refused request: websocket, sse (``/sse``) or rest."""
    if isinstance(conn, WebSocket):
        return "websocket"
    return "sse" if connection else "rest"


def gate_auth(
    auth: Callable[..., Any], publish_tools: Callable[[], PublishTools], *, connection: bool,
    metrics: Metrics,
) -> Callable[..., Any]:
    """``auth`` behind the IP's limits; ``connection``: also count a connection attempt.
    Every refusal is reported as ``metrics.connection_refused``."""

    async def gate(
        conn: HTTPConnection, tools: Annotated[PublishTools, Depends(publish_tools)],
    ) -> PublishTools:
        ip = client_ip(conn)
        try:
            if connection:
                await tools.limiter.check_connection(ip)
            await tools.limiter.check_auth(ip)
        except RateLimited as exc:
            metrics.connection_refused(transport_of(conn, connection), exc.code)
            if isinstance(conn, WebSocket):
                raise await _refuse_websocket(conn, CloseCode.RATE_LIMIT_VIOLATIONS,
                                              exc.message) from None
            raise
        except Exception as exc:
            if not is_outage(exc):
                raise
            logger.warning("cannot check the limits of %s (%s: %s)", ip, type(exc).__name__, exc)
            metrics.connection_refused(transport_of(conn, connection), Unavailable.code)
            if isinstance(conn, WebSocket):
                raise await _refuse_websocket(conn, CloseCode.TRY_AGAIN_LATER,
                                              UNAVAILABLE_REASON) from None
            raise Unavailable(UNAVAILABLE_REASON) from None
        return tools

    async def gated(
        conn: HTTPConnection,
        tools: Annotated[PublishTools, Depends(gate)],  # resolved before auth: order matters
        result: Annotated[AuthResult, Depends(auth)],
    ) -> AuthResult:
        if result.identity is None:
            if not connection:  # /ws and /sse check the Origin first, then count it themselves
                metrics.connection_refused("rest", "UNAUTHORIZED")
            try:
                await tools.limiter.auth_failed(client_ip(conn))
            except Exception as exc:  # the request is refused anyway; only the count is lost
                if not is_outage(exc):
                    raise
                logger.warning("cannot count a failed authentication of %s (%s: %s)",
                               client_ip(conn), type(exc).__name__, exc)
        return result

    return gated
