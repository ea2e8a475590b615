"""The one exception the Python client raises."""

from __future__ import annotations

from typing import Any


class DialogueClientError(Exception):
    """A command failed, timed out, or the connection could not serve it.

    ``code`` is one of the protocol's error codes (``ROOM_FULL``,
    ``RATE_LIMITED``, ``UNAVAILABLE``, ...) or ``TIMEOUT`` when no reply came
    within the client's ``ack_timeout``. ``details`` carries validation errors,
    ``retry_after`` the seconds to wait after ``RATE_LIMITED``, and ``extra``
    any other field of the server's error object (``reason``,
    ``correlation_id``, ...).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: Any = None,
        retry_after: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after
        self.extra: dict[str, Any] = dict(extra or {})

    @classmethod
    def from_wire(cls, error: object) -> DialogueClientError:
        """Build the exception from a protocol error object (``{"code", "message", ...}``)."""
        if not isinstance(error, dict):
            return cls("INTERNAL", f"malformed error object: {error!r}")
        fields = dict(error)
        code = str(fields.pop("code", "INTERNAL"))
        message = str(fields.pop("message", code))
        details = fields.pop("details", None)
        retry = fields.pop("retry_after", None)
        retry_after = float(retry) if isinstance(retry, (int, float)) else None
        return cls(code, message, details=details, retry_after=retry_after, extra=fields)

    def __repr__(self) -> str:
        return f"DialogueClientError({self.code!r}, {self.message!r})"
