"""``dialogue.router``: the WebSocket endpoint, REST routes and the lifespan."""


import asyncio
import functools
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, WebSocket

from .asyncapi import AsyncApiCache
from .auth import AuthResult
from .auth_gate import gate_auth
from .connection import Connection
from .errors import CloseCode
from .log_redaction import install_redaction
from .nodelay import ensure_nodelay
from .origins import origin_refusal
from .peers import client_ip
from .publisher import PublishTools
from .rest import build_rest_routes
from .runtime import Runtime
from .session import IdleSweeper, WebSocketSession, WebSocketTransport
from .sse import build_sse_routes
from .ticket_routes import build_ticket_routes
from .tickets import accept_tickets, tickets_for
from .usecases import UseCases


def build_router(rt: Runtime, uc: UseCases, auth: Callable[..., Any]) -> APIRouter:
    """A fresh router; its lifespan starts and stops the runtime."""

    sweeper = IdleSweeper(rt)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        install_redaction()  # uvicorn has configured its logging by now
        await rt.start()
        sweeper.start()
        try:
            yield
        finally:
            await sweeper.stop()
            await rt.stop()

    router = APIRouter(lifespan=lifespan)
    tickets = tickets_for(rt.broker, rt.config.ticket_ttl)
    # connection attempts and failed authentications per IP, before authenticate runs;
    # ?ticket= (from POST /tickets) stands in for authenticate on /ws and /sse
    connect_auth = gate_auth(accept_tickets(auth, tickets), rt.publish_tools, connection=True)
    rest_auth = gate_auth(auth, rt.publish_tools, connection=False)

    @router.websocket("/ws")
    async def websocket_endpoint(
        websocket: WebSocket, auth_result: Annotated[AuthResult, Depends(connect_auth)],
        tools: Annotated[PublishTools, Depends(rt.publish_tools)],
    ) -> None:
        await websocket.accept()
        ensure_nodelay(getattr(websocket, "_receive", None))  # the server's own ASGI receive
        refusal = origin_refusal(websocket, rt.config.allowed_origins)
        if refusal is not None:
            await _refuse(websocket, CloseCode.ORIGIN_REFUSED, refusal)
            return
        if auth_result.identity is None:
            await _refuse(websocket, CloseCode.UNAUTHORIZED, auth_result.reason)
            return
        if rt.stopping or not rt.started:
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

    @router.get("/client.js", include_in_schema=False)
    async def client_js(request: Request) -> Response:
        """The browser client, an ES module (no build step)."""
        body, etag = _client_js()
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(body, media_type="text/javascript; charset=utf-8",
                        headers={"ETag": etag, "Cache-Control": "public, max-age=300"})

    asyncapi = AsyncApiCache(rt.registry.all)

    @router.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi_json(request: Request) -> Response:
        """The AsyncAPI 3.0 document: channels, operations, rooms and their event schemas."""
        url = request.url
        body = asyncapi.render(url.scheme, url.netloc, url.path.removesuffix("/asyncapi.json"))
        return Response(body, media_type="application/json")

    router.include_router(build_rest_routes(rt, uc, rest_auth))
    router.include_router(build_ticket_routes(rt, rest_auth, tickets))
    router.include_router(build_sse_routes(rt, uc, connect_auth))
    return router


@functools.cache
def _client_js() -> tuple[bytes, str]:
    body = (Path(__file__).parent / "static" / "client.js").read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"'



async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Close before any frame: a browser can read the close code and reason."""
    with suppress(Exception):
        await websocket.close(code, reason[:120])
