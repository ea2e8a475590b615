"""``dialogue.router``: the lifespan, and the routers of every transport put together."""


import functools
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response

from .auth.gate import gate_auth
from .auth.log_redaction import install_redaction
from .auth.tickets import accept_tickets, tickets_for
from .contract.asyncapi import AsyncApiCache
from .rest.routes import build_rest_routes
from .rest.tickets import build_ticket_routes
from .runtime import Runtime
from .sse.routes import build_sse_routes
from .usecases import UseCases
from .websocket.endpoint import build_websocket_route
from .websocket.session import IdleSweeper


def build_router(
    rt: Runtime, uc: UseCases, auth: Callable[..., Any], extra: Sequence[APIRouter] = (),
) -> APIRouter:
    """A fresh router; its lifespan starts and stops the runtime. ``extra``: routers the facade
    adds (the metrics endpoint), included last, with their own lifespans."""

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
    connect_auth = gate_auth(accept_tickets(auth, tickets), rt.publish_tools, connection=True,
                             metrics=rt.metrics)
    rest_auth = gate_auth(auth, rt.publish_tools, connection=False, metrics=rt.metrics)

    @router.get("/client.js", include_in_schema=False)
    async def client_js(request: Request) -> Response:
        """The browser client, an ES module (no build step)."""
        body, etag = _client_js()
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(body, media_type="text/javascript; charset=utf-8",
                        headers={"ETag": etag, "Cache-Control": "public, max-age=300"})

    asyncapi = AsyncApiCache(rt.registry.all, rt.registry.families)  # as they are at each request

    @router.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi_json(request: Request) -> Response:
        """The AsyncAPI 3.0 document: channels, operations, rooms and their event schemas."""
        url = request.url
        body = asyncapi.render(url.scheme, url.netloc, url.path.removesuffix("/asyncapi.json"))
        return Response(body, media_type="application/json")

    router.include_router(build_websocket_route(rt, uc, connect_auth))
    router.include_router(build_rest_routes(rt, uc, rest_auth))
    router.include_router(build_ticket_routes(rt, rest_auth, tickets))
    router.include_router(build_sse_routes(rt, uc, connect_auth))
    for more in extra:
        router.include_router(more)
    return router


@functools.cache
def _client_js() -> tuple[bytes, str]:
    body = (Path(__file__).parent / "static" / "client.js").read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
