"""REST routes: rooms, history, publish, presence, health and readiness (adapters over the
use cases: parse, call, encode)."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from ..auth.dependency import AuthResult
from ..core.errors import (
    Unauthorized,
)
from ..core.peers import client_ip
from ..core.rules import MAX_INT64
from ..limits.http import USER_STATE
from ..publish.submission import PublishTools
from ..runtime import Runtime
from ..usecases import Caller, CreateRoomRequest, HistoryRequest, PublishRequest, UseCases
from .errors import error_responses, route_class
from .models import (
    CreateRoomBody,
    Health,
    HistoryPage,
    PresenceResult,
    PublishAck,
    PublishBody,
    RoomInfo,
    RoomList,
)
from .push_routes import build_push_routes


def build_rest_routes(rt: Runtime, uc: UseCases, auth: Callable[..., Any]) -> APIRouter:
    """The REST adapters: parse, call the use case, encode (the rules are in ``usecases``)."""
    router = APIRouter(route_class=route_class(rt.config.max_message_size), tags=["dialogue"])
    limits = rt.http_limits

    def limited(route: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return limits.guard(route) if limits is not None else (lambda endpoint: endpoint)

    async def caller(
        request: Request, result: Annotated[AuthResult, Depends(auth)],
        tools: Annotated[PublishTools, Depends(rt.publish_tools)],
    ) -> Caller:
        if result.identity is None:
            raise Unauthorized(result.reason or "missing or invalid credentials")
        setattr(request.state, USER_STATE, result.identity.user_id)  # the HTTP limits' key
        return Caller(result.identity, "rest", ip=client_ip(request), tools=tools)

    User = Annotated[Caller, Depends(caller)]
    Seq = Annotated[int | None, Query(ge=0, le=MAX_INT64)]
    Ms = Annotated[int | None, Query(ge=0, le=MAX_INT64, description="ms since the epoch, inclusive")]

    @router.get("/rooms", response_model=RoomList, response_model_exclude_unset=True,
                responses=error_responses(401, 429))
    @limited("rooms")
    async def list_rooms(user: User, request: Request, response: Response) -> dict[str, Any]:
        return {"rooms": await uc.reading.rooms(user)}

    @router.get("/rooms/{room}", response_model=RoomInfo, response_model_exclude_unset=True,
                responses=error_responses(401, 403, 404, 429))
    @limited("rooms")
    async def get_room(room: str, user: User, request: Request, response: Response) -> dict[str, Any]:
        return await uc.reading.room_info(user, room)

    @router.post("/rooms", response_model=RoomInfo, response_model_exclude_unset=True, status_code=201,
                 responses=error_responses(400, 401, 403, 409, 413, 429))
    @limited("create_room")
    async def create_room(body: CreateRoomBody, user: User, request: Request,
                          response: Response) -> dict[str, Any]:
        created = await uc.rooms.create(user, CreateRoomRequest(
            body.room, body.name, body.description, body.max_size, body.events,
            body.presence_events, body.sync_history_on_join))
        return created.info(0)

    @router.delete("/rooms/{room}", status_code=204, responses=error_responses(401, 403, 404, 429))
    @limited("delete_room")
    async def delete_room(room: str, user: User, request: Request, response: Response) -> None:
        await uc.rooms.delete(user, room)  # 204, with the limit's headers set on response

    @router.get("/rooms/{room}/history", response_model=HistoryPage,
                responses=error_responses(400, 401, 403, 404, 429))
    @limited("history")
    async def history(
        room: str, user: User, request: Request, response: Response, event: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50, before: Seq = None, after: Seq = None,
        sender: Annotated[str | None, Query(max_length=256)] = None,
        since_ts: Ms = None, until_ts: Ms = None,
    ) -> dict[str, Any]:
        found, position = await uc.reading.history(user, HistoryRequest(
            room, event, limit, before, after, sender, since_ts, until_ts))
        return {"events": [m.to_wire() for m in found], "position": position.to_dict()}

    @router.post("/rooms/{room}/events", response_model=PublishAck, status_code=202,
                 responses=error_responses(400, 401, 403, 404, 413, 422, 429, 503))
    @limited("publish")
    async def publish(
        room: str, body: PublishBody, user: User, request: Request, response: Response,
    ) -> dict[str, Any]:
        outcome = await uc.publishing.publish(user, PublishRequest(
            room, body.event, body.data, body.meta, body.idempotency_key))
        return {"duplicate": False, **outcome.ack()}

    @router.get("/rooms/{room}/presence", response_model=PresenceResult,
                responses=error_responses(401, 403, 404, 429))
    @limited("presence")
    async def presence(room: str, user: User, request: Request, response: Response) -> dict[str, Any]:
        members = await uc.reading.presence(user, room)
        return {"count": len(members), "users": [m.to_dict() for m in members]}

    if rt.push is not None:
        router.include_router(build_push_routes(rt, uc, caller, limited))

    @router.get("/health", response_model=Health, response_model_exclude_none=True)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "checks": {}}

    @router.get("/ready", response_model=Health, responses={503: {"model": Health}})
    async def ready() -> Any:
        # the informational reports (``subscriber`` with Redis, ``store`` with persistence) are
        # optional fields of the Health model: absent, not null, where they do not apply
        checks, report = await rt.readiness()
        ok = all(checks.values())
        body = {"status": "ok" if ok else "unavailable", "checks": checks, **report}
        return JSONResponse(body, status_code=200 if ok else 503)

    return router

