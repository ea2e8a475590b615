"""``GET /ws``: accept, check origin and identity, then run the session.

No ``from __future__ import annotations`` here: FastAPI reads the endpoint's
annotations, which name a dependency local to the factory."""

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import Annotated, Any

from fastapi import APIRouter, Depends, WebSocket

from ..auth.dependency import AuthResult
from ..auth.origins import origin_refusal
from ..core.errors import CloseCode
from ..core.peers import client_ip
from ..node.connection import Connection
from ..publish.submission import PublishTools
from ..runtime import Runtime
from ..usecases import UseCases
from .nodelay import ensure_nodelay
from .session import WebSocketSession, WebSocketTransport


def build_websocket_route(rt: Runtime, uc: UseCases, auth: Callable[..., Any]) -> APIRouter:
    """The WebSocket endpoint; ``auth`` is the connection gate (limits, tickets, authenticate)."""
    router = APIRouter()

    @router.websocket("/ws")
    async def websocket_endpoint(
        websocket: WebSocket, auth_result: Annotated[AuthResult, Depends(auth)],
        tools: Annotated[PublishTools, Depends(rt.publish_tools)],
    ) -> None:
        await websocket.accept()
        ensure_nodelay(getattr(websocket, "_receive", None))  # the server's own ASGI receive
        refusal = origin_refusal(websocket, rt.config.allowed_origins)
        if refusal is not None:
            rt.metrics.connection_refused("websocket", "FORBIDDEN")
            await _refuse(websocket, CloseCode.ORIGIN_REFUSED, refusal)
            return
        if auth_result.identity is None:
            rt.metrics.connection_refused("websocket", "UNAUTHORIZED")
            await _refuse(websocket, CloseCode.UNAUTHORIZED, auth_result.reason)
            return
        if rt.stopping or not rt.started:
            rt.metrics.connection_refused("websocket", "UNAVAILABLE")
            await _refuse(websocket, CloseCode.GOING_AWAY, "server shutting down")
            return
        conn = Connection(WebSocketTransport(websocket), auth_result.identity,
                          rt.queue_limits, ip=client_ip(websocket))
        conn.tools = tools
        task = asyncio.current_task()
        if task is not None:
            rt.sessions.add(task)
        try:
            await WebSocketSession(rt, uc, websocket, conn).run()
        finally:
            if task is not None:
                rt.sessions.discard(task)

    return router


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Close before any frame: a browser can read the close code and reason."""
    with suppress(Exception):
        await websocket.close(code, reason[:120])
