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
    Reject,
    Unauthorized,
    Unavailable,
)
from .hooks import call_maybe_async, correlation_id
from .http_limits import USER_STATE
from .outages import is_outage
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
from .runtime import Runtime
from .types import Identity

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


class DialogueRoute(APIRoute):
    """Answers every error with the protocol's body: ``{"error": {"code", "message"}}``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
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
                if is_outage(exc):
                    logger.warning("%s %s: backend unavailable (%s: %s)", request.method,
                                   request.url.path, type(exc).__name__, exc)
                    return error_response(Unavailable("a backend is unavailable; retry later"))
                cid = correlation_id()
                logger.exception("%s %s failed [%s]", request.method, request.url.path, cid)
                return error_response(InternalError(f"internal error; correlation id {cid}",
                                                    correlation_id=cid))

        return handler


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Error responses for OpenAPI; "4XX" replaces FastAPI's default 422 model,
    since every error here, malformed input included, has the ErrorBody shape."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody} for status in (400, *statuses)
    }
    responses["4XX"] = {"model": ErrorBody, "description": "any other client error"}
    return responses


def build_rest_routes(rt: Runtime, auth: Callable[..., Any]) -> APIRouter:
    router = APIRouter(route_class=DialogueRoute, tags=["dialogue"])
    limits = rt.http_limits

    def limited(route: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return limits.guard(route) if limits is not None else (lambda endpoint: endpoint)

    async def identity(request: Request, result: Annotated[AuthResult, Depends(auth)]) -> Identity:
        if result.identity is None:
            raise Unauthorized(result.reason or "missing or invalid credentials")
        setattr(request.state, USER_STATE, result.identity.user_id)  # the HTTP limits' key
        return result.identity

    User = Annotated[Identity, Depends(identity)]

    async def may_access(user: Identity, room_id: str) -> None:
        rt.registry.get(room_id)
        hook = rt.hooks.before_join
        if hook is None:
            return
        try:
            allowed = await call_maybe_async(hook, user, room_id)
        except Reject as exc:
            raise Forbidden(exc.reason, reason=exc.reason) from None
        if allowed is False:
            raise Forbidden(f"access to room '{room_id}' was refused", reason="refused")

    async def info(room_id: str) -> dict[str, Any]:
        return rt.registry.get(room_id).info(await rt.broker.presence.count(room_id))

    @router.get("/rooms", response_model=RoomList, responses=_errors(401, 429))
    @limited("rooms")
    async def list_rooms(user: User, request: Request, response: Response) -> dict[str, Any]:
        return {"rooms": [await info(r.id) for r in rt.registry.all()]}

    @router.get("/rooms/{room}", response_model=RoomInfo, responses=_errors(401, 404, 429))
    @limited("rooms")
    async def get_room(room: str, user: User, request: Request, response: Response) -> dict[str, Any]:
        return await info(room)

    @router.post("/rooms", response_model=RoomInfo, status_code=201,
                 responses=_errors(400, 401, 403, 409, 429))
    @limited("create_room")
    async def create_room(body: CreateRoomBody, user: User, request: Request,
                          response: Response) -> dict[str, Any]:
        if not rt.config.allow_client_rooms:
            raise Forbidden("clients may not create rooms on this server")
        config = rt.admin.config_from_client(
            body.name, body.description, body.max_size, body.events,
            presence_events=body.presence_events,
            sync_history_on_join=body.sync_history_on_join,
        )
        created = await rt.admin.create(body.room, config, created_by=user.user_id)
        return created.info(0)

    @router.delete("/rooms/{room}", status_code=204, responses=_errors(401, 403, 404, 429))
    @limited("delete_room")
    async def delete_room(room: str, user: User, request: Request, response: Response) -> None:
        await rt.admin.delete(room, by=user)  # 204, with the limit's headers set on response

    @router.get("/rooms/{room}/history", response_model=HistoryPage,
                responses=_errors(400, 401, 403, 404, 429))
    @limited("history")
    async def history(
        room: str, user: User, request: Request, response: Response, event: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        before: Annotated[int | None, Query(ge=0)] = None,
        after: Annotated[int | None, Query(ge=0)] = None,
        sender: Annotated[str | None, Query(max_length=256)] = None,
        since_ts: Annotated[int | None, Query(ge=0, description="ts >= this (ms)")] = None,
        until_ts: Annotated[int | None, Query(ge=0, description="ts <= this (ms)")] = None,
    ) -> dict[str, Any]:
        await may_access(user, room)
        found = await rt.history.page(rt.registry.get(room), event=event, limit=limit,
                                      before=before, after=after, sender=sender,
                                      since_ts=since_ts, until_ts=until_ts)
        position = await rt.broker.position(room)
        return {"events": [m.to_wire() for m in found], "position": position.to_dict()}

    @router.post("/rooms/{room}/events", response_model=PublishAck, status_code=202,
                 responses=_errors(400, 401, 403, 404, 413, 422, 429, 503))
    @limited("publish")
    async def publish(
        room: str, body: PublishBody, user: User, request: Request, response: Response,
        tools: Annotated[PublishTools, Depends(rt.publish_tools)],
    ) -> dict[str, Any]:
        await may_access(user, room)
        outcome = await rt.publisher.publish(
            rt.registry.get(room), body.event, body.data, identity=user, transport="rest",
            meta=body.meta, idempotency_key=body.idempotency_key,
            ip=request.client.host if request.client else None, tools=tools,
        )
        if outcome.message is None:
            return {"seq": None, "ts": None, "dropped": True}
        return {"seq": outcome.message.seq, "ts": outcome.message.ts,
                "duplicate": outcome.duplicate}

    @router.get("/rooms/{room}/presence", response_model=PresenceResult,
                responses=_errors(401, 403, 404, 429))
    @limited("presence")
    async def presence(room: str, user: User, request: Request, response: Response) -> dict[str, Any]:
        await may_access(user, room)
        members = await rt.broker.presence.members(room)
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
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        return body if ok else JSONResponse(body, status_code=503)

    return router


async def _safe(check: Coroutine[Any, Any, bool]) -> bool:
    try:
        return bool(await check)
    except Exception:
        return False
