"""Connection lifecycle shared by `DialogueClient`: state, connect, close, routing."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from .connection import Connection
from .errors import DialogueClientError
from .handlers import ConnectionState, Dispatcher, Frame, logger
from .handshake import ConnectError, open_socket
from .notify import FrameKind, Notifier
from .policy import Backoff, handshake_headers, with_token
from .reconnect import Supervisor
from .registry import RoomRegistry
from .room import ClientRoom

_KINDS: dict[str, FrameKind] = {
    "direct": "direct",
    "presence_join": "presence",
    "presence_leave": "presence",
    "room_created": "room_created",
    "room_deleted": "room_deleted",
    "error": "error",
}


class ClientCore:
    """State and connection management; `DialogueClient` adds the commands."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        ack_timeout: float = 10.0,
        reconnect: bool = True,
        backoff_initial: float = 0.25,
        backoff_max: float = 10.0,
        heartbeat: float | None = None,
        queue_size: int = 1024,
        token_in_query: bool = False,
        http_url: str | None = None,
    ) -> None:
        self.url = url
        self.http_url = http_url  # the REST base; None: derived from url (/prefix/ws -> /prefix)
        self.token = token  # may be replaced (refreshed) before the next reconnect
        self.token_in_query = token_in_query  # also as ?token= (it then reaches access logs)
        self.headers = dict(headers or {})
        self.ack_timeout = ack_timeout
        self.reconnect = reconnect
        self.heartbeat = heartbeat
        self.queue_size = queue_size
        self.hello: Frame | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._state: ConnectionState = "closed"
        self._backoff = Backoff(backoff_initial, backoff_max)
        self._dispatcher = Dispatcher()
        self._notify = Notifier(self._dispatcher)
        self._registry = RoomRegistry(self._notify)
        self._conn: Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()
        self._closed.set()
        self._ids = itertools.count(1)

    @property
    def state(self) -> ConnectionState:
        """``"connecting"``, ``"connected"``, ``"reconnecting"`` or ``"closed"``."""
        return self._state

    @property
    def connected(self) -> bool:
        """True while connected with every room rejoined."""
        return self._state == "connected"

    @property
    def client_id(self) -> str | None:
        """This connection's id from the server's ``hello`` (new on each reconnect)."""
        return None if self.hello is None else self.hello.get("client_id")

    @property
    def user_id(self) -> str | None:
        """The authenticated user id from the server's ``hello``."""
        return None if self.hello is None else self.hello.get("user_id")

    @property
    def joined(self) -> dict[str, ClientRoom]:
        """The rooms joined now, by id."""
        return dict(self._registry.rooms)

    async def connect(self) -> None:
        """Open the connection and wait for the server's ``hello``.

        Raises `DialogueClientError` if this first attempt fails
        (``UNAUTHORIZED`` after close 4001, ``FORBIDDEN``, ``UNAVAILABLE``);
        only drops after a successful connect are retried automatically.
        """
        if self._state != "closed":
            return
        self._closed.clear()
        self._ready.clear()
        self.close_code, self.close_reason = None, ""
        self._set_state("connecting")
        self._dispatcher.start()
        try:
            conn = await self._open()
        except BaseException as exc:
            if isinstance(exc, ConnectError):
                self.close_code, self.close_reason = exc.extra.get("close_code"), exc.message
            await self._shutdown()
            raise
        if self.state != "connecting":  # closed while the handshake ran
            await conn.close()
            raise DialogueClientError("UNAVAILABLE", "client closed while connecting")
        self._backoff.reset()
        self._connection_ready(conn)
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(conn), name="dialogue-client-supervisor"
        )

    async def close(self) -> None:
        """Close for good: rooms' iterators end, requests in flight fail."""
        if self._state == "closed" and self._conn is None:
            return
        supervisor, self._supervisor = self._supervisor, None
        self.close_code, self.close_reason = 1000, "client closed"
        self._set_state("closed")
        self._ready.set()  # wake requests waiting for a reconnect: they fail now
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        if self._conn is not None:
            await self._conn.close(1000, "client closed")
        await self._shutdown()

    async def wait_closed(self) -> None:
        """Wait until the client is closed (by `close` or a close it must not retry)."""
        await self._closed.wait()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- internals -------------------------------------------------------

    def _set_state(self, state: ConnectionState) -> None:
        if state != self._state:
            self._state = state
            self._notify.state_changed(state)

    async def _open(self) -> Connection:
        url = with_token(self.url, self.token) if self.token_in_query else self.url
        headers = handshake_headers(self.headers, self.token)
        ws, hello = await open_socket(url, headers, self.ack_timeout)
        self.hello = hello
        self._conn = Connection(
            ws,
            hello,
            on_frame=self._on_frame,
            next_id=lambda: next(self._ids),
            ack_timeout=self.ack_timeout,
            heartbeat=self.heartbeat,
        )
        return self._conn

    def _connection_ready(self, conn: Connection) -> None:
        self._conn = conn
        self._set_state("connected")
        self._ready.set()

    def _connection_lost(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self._ready.clear()
        self._set_state("reconnecting")

    async def _supervise(self, conn: Connection) -> None:
        supervisor = Supervisor(
            self._backoff,
            enabled=self.reconnect,
            open_=self._open,
            rejoin=self._registry.rejoin,
            on_lost=self._connection_lost,
            on_ready=self._connection_ready,
        )
        try:
            await supervisor.run(conn)
        except Exception:
            logger.exception("dialogue client: reconnect loop failed")
        self.close_code, self.close_reason = supervisor.close_code, supervisor.close_reason
        self._supervisor = None
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._set_state("closed")
        self._ready.set()
        if self._conn is not None:
            self._conn.abort()  # no-op when already closed
            self._conn = None
        self._registry.close_all()
        await self._dispatcher.stop(drain=1.0)
        self._closed.set()

    async def _ready_connection(self) -> Connection:
        if not self._ready.is_set() and self._state != "closed":
            try:
                async with asyncio.timeout(self.ack_timeout):
                    await self._ready.wait()
            except TimeoutError:
                raise DialogueClientError("UNAVAILABLE", "not connected (reconnecting)") from None
        if self._state != "connected" or self._conn is None:
            raise DialogueClientError("UNAVAILABLE", f"client is {self._state}, not connected")
        return self._conn

    async def _on_frame(self, frame: Frame) -> None:
        op = frame.get("op")
        if op in ("event", "room_deleted"):
            await self._registry.route(frame)
        kind = _KINDS.get(op) if isinstance(op, str) else None
        if kind == "error" and not self._notify.has("error"):
            logger.warning("dialogue client: server error frame: %s", frame.get("error"))
        if kind is not None:
            await self._notify.emit(kind, frame)

    async def _dispatch(self, job: Callable[[Frame], Awaitable[None]], arg: Frame) -> None:
        await self._dispatcher.put(job, arg)

    def _forget_room(self, room: ClientRoom) -> None:
        self._registry.forget(room)
