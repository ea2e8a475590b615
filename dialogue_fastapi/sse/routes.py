"""``GET /sse``: one-way streams of one or more rooms, resumable with ``Last-Event-ID``.

An SSE connection is a real member: it counts in room size, ``max_size`` and
presence (cluster-wide on Redis), fires the join/leave hooks, has the same
bounded send queue as a WebSocket (a slow reader is cut, 4009) and leaves its
rooms as soon as the client goes away. Refusals come before the stream starts,
as an HTTP error with the protocol's error body. The response is
sse-starlette's ``EventSourceResponse`` (pings as comment lines, disconnect
detection, the no-buffering and no-store headers); what it
streams is written by :class:`~dialogue_fastapi.sse_stream.SseStream`.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from sse_starlette import EventSourceResponse

from ..auth.dependency import AuthResult
from ..auth.origins import origin_refusal
from ..core.errors import BadRequest, CloseCode, EventNotAllowed, Forbidden, Unauthorized, Unavailable
from ..core.peers import client_ip
from ..core.rules import check_event_name
from ..core.types import Position
from ..node.connection import Connection, QueuedEvent
from ..rest.errors import DialogueRoute, error_responses
from ..rooms.registry import Room
from ..runtime import Runtime
from ..usecases import JoinRequest, UseCases
from .cursor import decode_cursor
from .stream import SseStream, SseTransport, single_room_framer, stream_framer

logger = logging.getLogger("dialogue_fastapi")
RETRY_MS = 2000  # what EventSource waits before reconnecting
SEND_TIMEOUT = 10.0  # a stream the server closed whose writes still block is cut after this
COALESCE = 16  # a write of fewer queued events waits one loop turn for more


def _filters(rooms: list[Room], events: str | None, most: int) -> dict[str, list[str] | None]:
    """Each room's subscriptions from ``events=a,b`` (None: the room's defaults)."""
    if not events:
        return {room.id: None for room in rooms}
    names = list(dict.fromkeys(n.strip() for n in events.split(",") if n.strip()))
    if len(names) > most:
        raise BadRequest(f"{len(names)} event names; the limit is {most}", limit=most)
    for name in names:
        check_event_name(name)
    found: dict[str, list[str] | None] = {}
    for room in rooms:
        allowed = room.config.event_names()
        found[room.id] = [n for n in names if not allowed or n in allowed]
    unknown = [n for n in names if not any(n in (found[r.id] or []) for r in rooms)]
    if unknown:
        raise EventNotAllowed(f"no room of this stream has events {unknown}")
    return found


class ShutdownWatch:
    """sse-starlette notices the server shutting down before the app's shutdown runs; it
    sets this event, and every SSE stream then gets ``disconnect`` (1001) and ends
    cleanly within the grace period instead of being cut."""

    GRACE = 2.0

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._event: anyio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        rt.on_stop.append(self.stop)

    def event(self) -> anyio.Event:
        if self._event is None:
            self._event = anyio.Event()
            self._task = asyncio.get_running_loop().create_task(self._watch(self._event))
        return self._event

    async def _watch(self, event: anyio.Event) -> None:
        await event.wait()
        for conn in self._rt.live_connections():
            if conn.transport.kind == "sse":
                conn.close(CloseCode.GOING_AWAY, "server shutting down")

    async def stop(self) -> None:
        task, self._task, self._event = self._task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def build_sse_routes(rt: Runtime, uc: UseCases, auth: Callable[..., Any]) -> APIRouter:
    router = APIRouter(route_class=DialogueRoute, tags=["dialogue"])
    shutdown = ShutdownWatch(rt)

    @router.get(
        "/sse", responses=error_responses(401, 403, 404, 409, 503),
        response_class=EventSourceResponse,
        summary="Stream rooms' events as Server-Sent Events",
    )
    async def sse(
        request: Request,
        auth_result: Annotated[AuthResult, Depends(auth)],
        room: Annotated[list[str], Query(description="a room to stream (repeat for more)")],
        events: Annotated[str | None, Query(description="only these events: a,b")] = None,
        last_event_id: Annotated[str | None, Query(
            description="the cursor to resume from, for a first request")] = None,
        last_event_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> EventSourceResponse:
        refusal = origin_refusal(request, rt.config.allowed_origins)
        if refusal is not None:
            rt.metrics.connection_refused("sse", Forbidden.code)
            raise Forbidden(refusal)
        if auth_result.identity is None:
            rt.metrics.connection_refused("sse", Unauthorized.code)
            raise Unauthorized(auth_result.reason or "missing or invalid credentials")
        if rt.stopping or not rt.started:
            rt.metrics.connection_refused("sse", Unavailable.code)
            raise Unavailable("the server is shutting down; reconnect later")
        room_ids = list(dict.fromkeys(room))
        if len(room_ids) > rt.config.max_rooms_per_connection:
            raise BadRequest(f"a stream may carry at most {rt.config.max_rooms_per_connection} rooms")
        rooms = [uc.access.room(r) for r in room_ids]  # BAD_REQUEST, ROOM_NOT_FOUND
        filters = _filters(rooms, events, rt.config.max_subscriptions)
        cursor_text = last_event_header or last_event_id
        since = decode_cursor(cursor_text) if cursor_text else {}
        conn = Connection(SseTransport(), auth_result.identity, rt.queue_limits,
                          ip=client_ip(request), framer=stream_framer)
        stream = SseStream(conn, RETRY_MS)
        # closed by the server (4009, 4004, 1001): it leaves its rooms now, not when the stream
        # ends, and a stream still stuck on a reader that stopped reading is cut after
        # SEND_TIMEOUT (a timer per closed stream, not a timeout around every write)
        conn.on_close = lambda: _closed(rt, conn, stream)
        await rt.connected(conn)
        try:
            for r in rooms:
                await _join(uc, conn, stream, r, filters[r.id], since.get(r.id))
        except BaseException:
            _cleanup(rt, conn)
            raise
        conn.coalesce = COALESCE
        if len(rooms) == 1:  # its events: whole SSE messages, framed once per delivery
            conn.framer = single_room_framer(stream.positions[rooms[0].id].epoch)
        hello = conn.hello(rt.config.heartbeat)

        async def client_gone(_: Any) -> None:  # also when the stream never started
            _cleanup(rt, conn)

        return EventSourceResponse(
            _frames(rt, conn, stream, stream.hello(hello)), ping=rt.config.heartbeat,
            shutdown_event=shutdown.event(),
            shutdown_grace_period=ShutdownWatch.GRACE, client_close_handler_callable=client_gone,
        )

    return router


async def _join(
    uc: UseCases, conn: Connection, stream: SseStream, room: Room, subscriptions: list[str] | None,
    since: Position | None,
) -> None:
    def reply(result: dict[str, Any]) -> None:
        position = Position(result["position"]["seq"], result["position"]["epoch"])
        if since is not None and result.get("recovered"):
            stream.start(room.id, since)  # replayed events follow and move it on
        else:
            stream.start(room.id, position)
        if since is not None and not result.get("recovered"):
            conn.send_text(orjson.dumps({"op": "recover_failed", "room": room.id,
                                         "position": position.to_dict()}).decode())
        for event in result["events"]:
            conn.queue_event(QueuedEvent(event["room"], event["seq"], event["event"],
                                         orjson.dumps(event).decode()))

    await uc.members.join(conn, JoinRequest(room.id, subscriptions, since), reply)


async def _frames(rt: Runtime, conn: Connection, stream: SseStream, first: bytes) -> AsyncIterator[bytes]:
    stream.writer = asyncio.current_task()  # the response's streaming task
    try:
        yield first
        while True:
            items, close = await conn.next_batch()
            chunk = stream.render(items)
            if chunk:
                yield chunk
            if close is not None:
                return
    finally:
        stream.writer = None
        _cleanup(rt, conn)


def _closed(rt: Runtime, conn: Connection, stream: SseStream) -> None:
    _cleanup(rt, conn)
    writer = stream.writer
    if writer is not None:
        asyncio.get_running_loop().call_later(SEND_TIMEOUT, _cut, writer)


def _cut(writer: asyncio.Task[Any]) -> None:
    if not writer.done():
        logger.warning("cutting an SSE stream whose client stopped reading")
        writer.cancel()


def _cleanup(rt: Runtime, conn: Connection) -> None:
    """Leave the rooms (hooks, presence) in a task of its own: the stream's task may be
    cancelled (the client went away) and could not wait for it."""
    if conn.finished:
        return
    conn.finished = conn.closed = True
    task = asyncio.get_running_loop().create_task(rt.disconnected(conn))
    rt.sessions.add(task)
    task.add_done_callback(rt.sessions.discard)
