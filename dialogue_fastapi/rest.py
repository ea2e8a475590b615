"""REST routes: rooms, history, publish, presence, health and readiness."""

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from .auth import AuthResult
from .errors import (
    BadRequest,
    DialogueError,
    Forbidden,
    InternalError,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from .http_limits import USER_STATE
from .ops import publish_ack
from .outages import protocol_error
from .peers import client_ip
from .publisher import PublishTools
from .rest_models import (
    CreateRoomBody,
    ErrorBody,
    Health,
    HistoryPage,
    PresenceResult,
    PublishAck,
    PublishBody,
    RoomInfo,
    RoomList,
)
from .rules import MAX_INT64
from .runtime import Runtime
from .usecases import Caller, CreateRoomRequest, HistoryRequest, PublishRequest, UseCases

logger = logging.getLogger("dialogue_fastapi")


def error_response(error: DialogueError) -> JSONResponse:
    headers = {}
    retry_after = error.extra.get("retry_after")
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, int(float(retry_after) + 0.999)))
    return JSONResponse({"error": error.to_dict()}, status_code=error.status, headers=headers)


#: the protocol's error for an HTTPException of each status; other 4xx are BAD_REQUEST
_HTTP_ERRORS: dict[int, type[DialogueError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 413: PayloadTooLarge,
    429: RateLimited, 503: Unavailable,
}


def http_error_response(exc: HTTPException) -> JSONResponse:
    """An ``HTTPException`` in the protocol's shape, with its status and headers kept."""
    status = exc.status_code
    error_class = _HTTP_ERRORS.get(status) or (BadRequest if status < 500 else InternalError)
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    body = {"error": {"code": error_class.code, "message": message}}
    return JSONResponse(body, status_code=status, headers=exc.headers)


async def _read_within(request: Request, limit: int) -> None:
    """Refuse a body over ``limit`` bytes with 413 before anything parses it."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise BadRequest("Content-Length must be a number of bytes")
        if int(length) > limit:
            raise PayloadTooLarge(f"request body of {length} bytes; the limit is {limit}")
        return
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes; the limit is {limit}")
    request._body = bytes(body)  # what Request.body() returns from now on


class DialogueRoute(APIRoute):
    """Answers every error with the protocol's body: ``{"error": {"code", "message"}}``;
    a body over ``max_body`` bytes is refused with 413 before it is parsed."""

    max_body: int | None = None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        max_body = self.max_body

        async def handler(request: Request) -> Response:
            try:
                if max_body is not None and request.method in ("POST", "PUT", "PATCH"):
                    await _read_within(request, max_body)
                return await original(request)
            except RequestValidationError as exc:
                errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""),
                           "type": e.get("type", "")} for e in exc.errors()]
                where = ".".join(str(p) for p in errors[0]["loc"]) if errors else "request"
                return error_response(BadRequest(
                    f"{where}: {errors[0]['msg'] if errors else 'invalid'}", details=errors))
            except DialogueError as exc:
                return error_response(exc)
            except HTTPException as exc:  # FastAPI's own (a body that is not JSON), a dependency's
                return http_error_response(exc)
            except Exception as exc:
                return error_response(protocol_error(exc, f"{request.method} {request.url.path}"))

        return handler


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Error responses for OpenAPI; "4XX" replaces FastAPI's default 422 model,
    since every error here, malformed input included, has the ErrorBody shape."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody} for status in (400, *statuses)
    }
    responses["4XX"] = {"model": ErrorBody, "description": "any other client error"}
    return responses


def route_class(max_body: int) -> type[DialogueRoute]:
    """A :class:`DialogueRoute` refusing bodies over ``max_body`` bytes."""
    return type("DialogueRoute", (DialogueRoute,), {"max_body": max_body})


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

    @router.get("/rooms", response_model=RoomList, responses=_errors(401, 429))
    @limited("rooms")
    async def list_rooms(user: User, request: Request, response: Response) -> dict[str, Any]:
        return {"rooms": await uc.reading.rooms(user)}

    @router.get("/rooms/{room}", response_model=RoomInfo, responses=_errors(401, 403, 404, 429))
    @limited("rooms")
    async def get_room(room: str, user: User, request: Request, response: Response) -> dict[str, Any]:
        return await uc.reading.room_info(user, room)

    @router.post("/rooms", response_model=RoomInfo, status_code=201,
                 responses=_errors(400, 401, 403, 409, 413, 429))
    @limited("create_room")
    async def create_room(body: CreateRoomBody, user: User, request: Request,
                          response: Response) -> dict[str, Any]:
        created = await uc.rooms.create(user, CreateRoomRequest(
            body.room, body.name, body.description, body.max_size, body.events,
            body.presence_events, body.sync_history_on_join))
        return created.info(0)

    @router.delete("/rooms/{room}", status_code=204, responses=_errors(401, 403, 404, 429))
    @limited("delete_room")
    async def delete_room(room: str, user: User, request: Request, response: Response) -> None:
        await uc.rooms.delete(user, room)  # 204, with the limit's headers set on response

    @router.get("/rooms/{room}/history", response_model=HistoryPage,
                responses=_errors(400, 401, 403, 404, 429))
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
                 responses=_errors(400, 401, 403, 404, 413, 422, 429, 503))
    @limited("publish")
    async def publish(
        room: str, body: PublishBody, user: User, request: Request, response: Response,
    ) -> dict[str, Any]:
        outcome = await uc.publishing.publish(user, PublishRequest(
            room, body.event, body.data, body.meta, body.idempotency_key))
        return {"duplicate": False, **publish_ack(outcome)}

    @router.get("/rooms/{room}/presence", response_model=PresenceResult,
                responses=_errors(401, 403, 404, 429))
    @limited("presence")
    async def presence(room: str, user: User, request: Request, response: Response) -> dict[str, Any]:
        members = await uc.reading.presence(user, room)
        return {"count": len(members), "users": [m.to_dict() for m in members]}

    @router.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "checks": {}}

    @router.get("/ready", response_model=Health, responses={503: {"model": Health}})
    async def ready() -> Any:
        checks = {"started": rt.started, "broker": await _safe(rt.broker.healthy())}
        if rt.writer is not None:  # the store's writer: running and not failing
            checks["store"] = rt.writer.healthy
        ok = all(checks.values())
        dead_letters = rt.writer.dead_letters if rt.writer is not None else 0  # never fails /ready
        body = {"status": "ok" if ok else "unavailable", "checks": checks,
                "dead_letters": dead_letters}
        return body if ok else JSONResponse(body, status_code=503)

    return router


async def _safe(check: Coroutine[Any, Any, bool]) -> bool:
    try:
        return bool(await check)
    except Exception:
        return False
