"""The error family: every error the core raises carries a protocol code.

Only the edges (the WebSocket session and the REST routes) turn these into
error frames, close codes and HTTP statuses.
"""

from __future__ import annotations

from typing import Any


class DialogueError(Exception):
    """Base of every error with a protocol code (see docs/protocol.md)."""

    code: str = "INTERNAL"
    status: int = 500

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra: dict[str, Any] = extra

    def to_dict(self) -> dict[str, Any]:
        """The error object sent on the wire."""
        return {"code": self.code, "message": self.message, **self.extra}


class BadRequest(DialogueError):
    code, status = "BAD_REQUEST", 400


class Unauthorized(DialogueError):
    code, status = "UNAUTHORIZED", 401


class Forbidden(DialogueError):
    code, status = "FORBIDDEN", 403


class RoomNotFound(DialogueError):
    code, status = "ROOM_NOT_FOUND", 404


class RoomExists(DialogueError):
    code, status = "ROOM_EXISTS", 409


class RoomFull(DialogueError):
    code, status = "ROOM_FULL", 409


class JoinDenied(DialogueError):
    code, status = "JOIN_DENIED", 403


class NotInRoom(DialogueError):
    code, status = "NOT_IN_ROOM", 409


class NotFound(DialogueError):
    """Something other than a room does not exist (or is not the caller's): a push registration."""

    code, status = "NOT_FOUND", 404


class EventNotAllowed(DialogueError):
    code, status = "EVENT_NOT_ALLOWED", 403


class ValidationFailed(DialogueError):
    code, status = "VALIDATION_FAILED", 422


class RateLimited(DialogueError):
    code, status = "RATE_LIMITED", 429


class Blocked(DialogueError):
    code, status = "BLOCKED", 403


class PayloadTooLarge(DialogueError):
    code, status = "PAYLOAD_TOO_LARGE", 413


class Unavailable(DialogueError):
    code, status = "UNAVAILABLE", 503


class InternalError(DialogueError):
    code, status = "INTERNAL", 500


ERRORS_BY_CODE: dict[str, type[DialogueError]] = {
    cls.code: cls
    for cls in (
        BadRequest, Unauthorized, Forbidden, RoomNotFound, RoomExists, RoomFull,
        JoinDenied, NotInRoom, NotFound, EventNotAllowed, ValidationFailed, RateLimited,
        Blocked, PayloadTooLarge, Unavailable, InternalError,
    )
}


def error_for_code(code: str, message: str, **extra: Any) -> DialogueError:
    """Build the error class that matches a protocol code."""
    return ERRORS_BY_CODE.get(code, DialogueError)(message, **extra)


class Reject(Exception):
    """Raised by hooks and middleware to refuse: ``Reject("reason", code="BLOCKED")``.

    In ``authenticate`` it refuses the connection (close 4001 / HTTP 401);
    in ``before_join`` it refuses the join (``JOIN_DENIED`` unless a code is
    given); in ``before_each`` and middleware it blocks the event.
    """

    def __init__(self, reason: str, code: str = "BLOCKED") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class CloseCode:
    """WebSocket close codes of protocol v1."""

    NORMAL = 1000
    GOING_AWAY = 1001
    ORIGIN_REFUSED = 1008
    TOO_LARGE = 1009
    UNAUTHORIZED = 4001
    HEARTBEAT_TIMEOUT = 4002
    FORBIDDEN = 4003
    DISCONNECTED_BY_APP = 4004
    RATE_LIMIT_VIOLATIONS = 4008
    SLOW_CONSUMER = 4009
    PROTOCOL_VIOLATION = 4400

    SERVICE_RESTART = 1012  # sent by uvicorn itself on shutdown
    TRY_AGAIN_LATER = 1013  # a backend (Redis) is unavailable: the connection cannot be served

    RECONNECT = frozenset({1001, 1012, 1013, 4002, 4008, 4009})
