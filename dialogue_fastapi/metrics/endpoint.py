"""The scrape endpoint (``GET /metrics`` under the router) and its protection.

With an ``admin`` dependency, that dependency decides. Without one, the
endpoint answers only *direct loopback requests*: the request arrived on a
loopback address of this server (ASGI ``scope["server"]``, the socket it was
accepted on), from a loopback client, and carries no forwarding header
(``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``; a proxy on the same host
would otherwise make every request look local). Anything else gets 403
unless ``allow_unprotected=True``. A Unix-socket bind is not loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ..core.background import BackgroundTask
from ..core.errors import Forbidden
from .exporter import Exporter

FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def _loopback(address: Any) -> bool:
    if not isinstance(address, tuple | list) or not address or not isinstance(address[0], str):
        return False
    try:
        return ipaddress.ip_address(address[0]).is_loopback
    except ValueError:
        return address[0] == "localhost"


def direct_loopback(request: Request) -> bool:
    """Whether the request reached a loopback bind directly from this host (see the module)."""
    scope = request.scope
    if not (_loopback(scope.get("server")) and _loopback(scope.get("client"))):
        return False
    return not any(name in request.headers for name in FORWARDING_HEADERS)


def build_metrics_router(exporter: Exporter) -> APIRouter:
    """A router with the endpoint (if configured) and, in multiprocess mode, the sampler's lifespan."""
    config = exporter.config
    sampler = BackgroundTask("dialogue-metrics-sampler", exporter.sample_forever)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        if exporter.multiprocess:
            sampler.start()
        try:
            yield
        finally:
            await sampler.stop()

    router = APIRouter(lifespan=lifespan)
    if config.endpoint is None:
        return router
    guard = [Depends(config.admin)] if config.admin is not None else []
    open_to_all = config.admin is not None or config.allow_unprotected

    @router.get(config.endpoint, include_in_schema=False, dependencies=guard)
    async def metrics(request: Request) -> Response:
        if not open_to_all and not direct_loopback(request):
            refusal = Forbidden("the metrics endpoint needs MetricsConfig(admin=...) off loopback "
                                "(or allow_unprotected=True)")
            return JSONResponse({"error": refusal.to_dict()}, status_code=refusal.status)
        return Response(exporter.render(), media_type=CONTENT_TYPE_LATEST)

    return router
