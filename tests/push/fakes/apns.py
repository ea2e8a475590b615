"""An APNs service on 127.0.0.1: HTTP/2 over TLS (raw h2 on asyncio, so it can send GOAWAY).

Per request it checks what Apple checks, with Apple's reasons:

- the provider token: ``authorization: bearer <JWT>``, ES256 signed by the team's key,
  ``kid`` the key id, ``iss`` the team id, ``iat`` at most an hour old by the service's
  clock (else 403 ``ExpiredProviderToken``); a new token less than 20 minutes after the
  last accepted one is 429 ``TooManyProviderTokenUpdates``, unless the last one was
  rejected;
- ``POST /3/device/<hex token>``, ``apns-topic`` (one of the app's), ``apns-push-type``,
  ``apns-priority`` (5 or 10), ``apns-expiration`` (a number), ``apns-collapse-id``
  (at most 64 bytes), a payload of at most 4,096 bytes that is JSON with ``aps``.

Then it answers as scripted per device token (a status and reason, ``DROP`` to cut the
connection, ``GOAWAY`` to refuse the stream with GOAWAY), else 200; and after
``goaway_after`` answered streams on one connection it sends GOAWAY and closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec

from .tls import Tls

DROP = "drop"
GOAWAY = "goaway"
_PATH = re.compile(r"/3/device/([0-9a-fA-F]+)")


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str = ""


@dataclass
class ApnsRequest:
    device_token: str
    headers: dict[str, str]
    payload: dict[str, Any]
    size: int
    provider_token: str
    connection: int
    status: int


class FakeApns:
    """``await start(tls)``; ``script(token, Reply(...)|DROP|GOAWAY, ...)``; read ``received``."""

    def __init__(self, *, team_id: str, key_id: str, public_key: ec.EllipticCurvePublicKey,
                 topics: set[str], clock: Callable[[], float] = time.time,
                 goaway_after: int | None = None) -> None:
        self.team_id, self.key_id, self.public_key = team_id, key_id, public_key
        self.topics = topics
        self.clock = clock
        self.goaway_after = goaway_after
        self.received: list[ApnsRequest] = []
        self.refused: list[tuple[int, str]] = []  # answers other than scripted ones
        self.connections = 0
        self.accepted_tokens: list[str] = []  # distinct provider tokens, in order
        self._last_iat = 0
        self._last_rejected = False
        self._scripts: dict[str, deque[Reply | str]] = {}
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.url = ""

    async def start(self, tls: Tls) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0,
                                                  ssl=tls.server_context(["h2"]))
        self.url = f"https://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()

    def script(self, device_token: str, *replies: Reply | str) -> None:
        self._scripts[device_token] = deque(replies)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self._writers.add(writer)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                    header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        answered = 0
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        streams[event.stream_id] = (dict(event.headers), bytearray())  # type: ignore[arg-type]
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id][1].extend(event.data)
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        headers, body = streams.pop(event.stream_id)
                        reply = self._answer(headers, bytes(body), number)
                        if reply == DROP:
                            writer.transport.abort()
                            return
                        if reply == GOAWAY:  # refuse this stream: the client must send it again
                            conn.close_connection(last_stream_id=max(0, event.stream_id - 2))
                            writer.write(conn.data_to_send())
                            await writer.drain()
                            return
                        assert isinstance(reply, Reply)
                        self._respond(conn, event.stream_id, reply)
                        answered += 1
                        if self.goaway_after is not None and answered >= self.goaway_after:
                            conn.close_connection(last_stream_id=event.stream_id)
                            writer.write(conn.data_to_send())
                            await writer.drain()
                            return
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        return
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, h2.exceptions.ProtocolError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    def _respond(conn: h2.connection.H2Connection, stream_id: int, reply: Reply) -> None:
        body = b""
        if reply.reason:
            extra = {"timestamp": int(time.time() * 1000)} if reply.status == 410 else {}
            body = orjson.dumps({"reason": reply.reason, **extra})
        headers = [(":status", str(reply.status)), ("apns-id", str(uuid.uuid4()).upper())]
        if body:
            headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
        conn.send_headers(stream_id, headers, end_stream=not body)
        if body:
            conn.send_data(stream_id, body, end_stream=True)

    def _answer(self, headers: dict[str, str], body: bytes, connection: int) -> Reply | str:
        bearer = headers.get("authorization", "").removeprefix("bearer ")
        refusal = self._check_token(bearer) or self._check_request(headers, body)
        if refusal is not None:
            self.refused.append((refusal.status, refusal.reason))
            return refusal
        device = _PATH.fullmatch(headers[":path"])
        assert device is not None
        script = self._scripts.get(device.group(1))
        reply = script.popleft() if script else Reply(200)
        if isinstance(reply, Reply) and reply.reason in ("ExpiredProviderToken", "InvalidProviderToken"):
            self._last_rejected = True
        status = reply.status if isinstance(reply, Reply) else 0
        self.received.append(ApnsRequest(device.group(1), headers, orjson.loads(body), len(body), bearer,
                                         connection, status))
        return reply

    def _check_token(self, token: str) -> Reply | None:
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"],
                                options={"require": ["iss", "iat"], "verify_iat": False})
        except jwt.PyJWTError:
            return Reply(403, "InvalidProviderToken" if token else "MissingProviderToken")
        if header.get("kid") != self.key_id or claims["iss"] != self.team_id:
            return Reply(403, "InvalidProviderToken")
        iat, now = int(claims["iat"]), self.clock()
        if iat > now + 60:
            return Reply(403, "InvalidProviderToken")
        if now - iat > 3600:
            self._last_rejected = True
            return Reply(403, "ExpiredProviderToken")
        if token not in self.accepted_tokens:
            if self.accepted_tokens and not self._last_rejected and iat - self._last_iat < 20 * 60:
                return Reply(429, "TooManyProviderTokenUpdates")
            self.accepted_tokens.append(token)
            self._last_iat, self._last_rejected = iat, False
        return None

    def _check_request(self, headers: dict[str, str], body: bytes) -> Reply | None:
        if headers.get(":method") != "POST":
            return Reply(405, "MethodNotAllowed")
        if not _PATH.fullmatch(headers.get(":path", "")):
            return Reply(404, "BadPath")
        if "apns-topic" not in headers:
            return Reply(400, "MissingTopic")
        if headers["apns-topic"] not in self.topics:
            return Reply(400, "TopicDisallowed")
        if headers.get("apns-push-type") != "alert":
            return Reply(400, "InvalidPushType")
        if headers.get("apns-priority", "10") not in ("5", "10"):
            return Reply(400, "BadPriority")
        if not headers.get("apns-expiration", "0").isdigit():
            return Reply(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return Reply(400, "BadCollapseId")
        if len(body) > 4096:
            return Reply(413, "PayloadTooLarge")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return Reply(400, "PayloadEmpty")
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return Reply(400, "PayloadEmpty")
        return None
