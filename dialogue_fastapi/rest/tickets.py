"""``POST /tickets``: trade the caller's normal credentials for a connection ticket.

The route authenticates like every REST route (the application's
``authenticate``, behind the IP's failed-authentication budget; a refusal is
401 ``UNAUTHORIZED`` with the protocol's error body) and answers 201 with a
ticket that ``/ws?ticket=...`` and ``/sse?ticket=...`` accept once, within
``expires_in`` seconds (see :mod:`dialogue_fastapi.tickets`).
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from ..auth.dependency import AuthResult
from ..auth.tickets import TicketStore
from ..core.errors import Unauthorized
from ..limits.http import USER_STATE
from ..runtime import Runtime
from .errors import DialogueRoute, error_responses


class TicketGrant(BaseModel):
    """A single-use connection ticket."""

    ticket: str = Field(description="pass as ?ticket= to /ws or /sse; valid once")
    expires_in: int = Field(description="whole seconds the ticket stays valid", examples=[30])


def build_ticket_routes(rt: Runtime, auth: Callable[..., Any], store: TicketStore) -> APIRouter:
    router = APIRouter(route_class=DialogueRoute, tags=["dialogue"])
    limits = rt.http_limits

    async def issue(request: Request, response: Response,
                    result: Annotated[AuthResult, Depends(auth)]) -> TicketGrant:
        if result.identity is None:
            raise Unauthorized(result.reason or "missing or invalid credentials")
        setattr(request.state, USER_STATE, result.identity.user_id)  # the HTTP limits' key
        response.headers["Cache-Control"] = "no-store"
        ticket = await store.issue(result.identity)
        return TicketGrant(ticket=ticket, expires_in=int(store.ttl))

    endpoint = limits.guard("tickets")(issue) if limits is not None else issue
    router.add_api_route(
        "/tickets", endpoint, methods=["POST"], status_code=201, response_model=TicketGrant,
        responses=error_responses(401, 429, 503), summary="Get a single-use connection ticket",
        description="Authenticated like the other routes; the ticket replaces credentials "
        "in the URL of /ws and /sse (?ticket=...), once, within expires_in seconds.",
    )
    return router
