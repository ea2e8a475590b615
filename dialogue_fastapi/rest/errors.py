"""The HTTP edge of every REST route and ``/sse``: errors in the protocol's shape
(``{"error": {"code", "message"}}`` with the status of its table), and bodies over
``max_message_size`` refused with 413 before they are parsed."""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from ..core.errors import (
    BadRequest,
    DialogueError,
    Forbidden,
    InternalError,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from ..core.outages import protocol_error
from .models import ErrorBody


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


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
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


