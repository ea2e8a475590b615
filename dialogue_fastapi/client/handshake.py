"""Opening a socket: the WebSocket handshake and the server's ``hello``."""

from __future__ import annotations

import asyncio

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from .errors import DialogueClientError
from .handlers import Frame, logger
from .policy import ABNORMAL, REFUSAL_CODES, is_permanent_http_refusal, should_reconnect


class ConnectError(DialogueClientError):
    """The handshake failed or the server closed before its ``hello``.

    ``permanent`` tells whether retrying is pointless (bad credentials,
    forbidden origin, ...); ``extra["close_code"]`` holds the close code when
    the server closed the socket.
    """

    def __init__(self, code: str, message: str, *, permanent: bool, close_code: int | None = None):
        extra = {} if close_code is None else {"close_code": close_code}
        super().__init__(code, message, extra=extra)
        self.permanent = permanent


def decode(raw: str | bytes) -> Frame | None:
    """Parse one text frame; `None` (and a log line) for anything but a JSON object."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        logger.warning("dialogue client: ignoring a frame that is not JSON")
        return None
    if not isinstance(value, dict):
        logger.warning("dialogue client: ignoring a frame that is not a JSON object")
        return None
    return value


async def open_socket(url: str, headers: dict[str, str], timeout: float) -> tuple[ClientConnection, Frame]:
    """Connect and wait for the server's ``hello``; raise `ConnectError` on failure."""
    try:
        ws = await connect(url, additional_headers=headers, open_timeout=timeout, max_size=None)
    except InvalidURI as exc:
        raise ConnectError("BAD_REQUEST", str(exc), permanent=True) from exc
    except InvalidStatus as exc:
        status = exc.response.status_code
        code = {401: "UNAUTHORIZED", 403: "FORBIDDEN"}.get(status, "UNAVAILABLE")
        raise ConnectError(code, str(exc), permanent=is_permanent_http_refusal(status)) from exc
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        where = url.split("?", 1)[0]  # never log the token
        raise ConnectError("UNAVAILABLE", f"cannot connect to {where}: {exc}", permanent=False) from exc
    try:
        hello = await asyncio.wait_for(_read_hello(ws), timeout)
    except ConnectError:
        await ws.close()
        raise
    except TimeoutError as exc:
        ws.transport.abort()
        raise ConnectError("UNAVAILABLE", "no hello from the server", permanent=False) from exc
    except BaseException:  # cancelled: do not leak the socket
        ws.transport.abort()
        raise
    if hello.get("protocol", 1) != 1:
        logger.warning("dialogue client speaks protocol 1, server says %r", hello.get("protocol"))
    return ws, hello


async def _read_hello(ws: ClientConnection) -> Frame:
    advice: bool | None = None
    try:
        while True:
            frame = decode(await ws.recv())
            if frame is None:
                continue
            if frame.get("op") == "hello":
                return frame
            if frame.get("op") == "disconnect" and isinstance(frame.get("reconnect"), bool):
                advice = frame["reconnect"]
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else ABNORMAL
        reason = exc.rcvd.reason if exc.rcvd else ""
        permanent = not should_reconnect(code, advice)
        error = REFUSAL_CODES.get(code, "UNAVAILABLE") if permanent else "UNAVAILABLE"
        message = f"server closed the connection ({code}{': ' + reason if reason else ''})"
        raise ConnectError(error, message, permanent=permanent, close_code=code) from exc
