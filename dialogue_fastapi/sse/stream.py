"""Writing one SSE connection: frames from its queue, each event with the stream's cursor.

The cursor is computed when a frame is written, not when it is queued, so the
``id:`` of every message is exactly the positions the client has received.
Events are ``id:`` / ``event: <name>`` / ``data: <envelope>``; everything else
the server says (hello, recovery failures, presence notices, direct messages,
the disconnect frame) is ``event: dialogue`` with the protocol's JSON object.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from ..core.types import EventMessage, Position
from ..node.connection import Connection, EventFramer, Queued, QueuedEvent
from .cursor import encode_cursor


class SseTransport:
    """The transport of an SSE connection: its frames are written by :class:`SseStream`."""

    kind = "sse"

    async def send(self, text: str) -> None:  # pragma: no cover - SSE drains its own queue
        raise RuntimeError("an SSE connection is written by its stream")

    async def close(self, code: int, reason: str) -> None:
        return None


def dialogue_frame(text: str) -> str:
    return f"event: dialogue\ndata: {text}\n\n"


def event_field(name: str) -> str:
    """An event name as an SSE ``event:`` value. Names with line breaks are refused at
    publish; events stored before that rule could still hold one, and a line break here
    would let it write fields of its own (``id:``, ``retry:``) into other users' streams."""
    if "\n" in name or "\r" in name:
        return name.replace("\r", " ").replace("\n", " ")
    return name


def event_frame(room: str, epoch: str, seq: int, event: str, text: str) -> str:
    """The SSE message of one event on a single-room stream (the same for every such
    stream of the room, so it is built once per event)."""
    cursor = encode_cursor({room: Position(seq, epoch)})
    return f"id: {cursor}\nevent: {event_field(event)}\ndata: {text}\n\n"


def stream_framer(message: EventMessage, text: str, shared: dict[str, str]) -> QueuedEvent:
    """A stream of several rooms: the ``id:`` cursor is computed when the event is written."""
    return QueuedEvent(message.room, message.seq, message.event, text)


def single_room_framer(epoch: str) -> EventFramer:
    """A stream of one room: the whole SSE message, shared by every such stream of the room
    within one delivery."""

    def frame(message: EventMessage, text: str, shared: dict[str, str]) -> str:
        key = "sse:" + epoch
        built = shared.get(key)
        if built is None:
            built = shared[key] = event_frame(message.room, epoch, message.seq, message.event, text)
        return built

    return frame


class SseStream:
    """The positions of one stream's rooms, and the text of its frames."""

    def __init__(self, conn: Connection, retry_ms: int) -> None:
        self.conn = conn
        self.positions: dict[str, Position] = {}
        self._retry_ms = retry_ms
        self._cursor: str | None = None
        self.writer: asyncio.Task[Any] | None = None  # the response task writing it, once started

    def start(self, room: str, position: Position) -> None:
        """The position the stream starts after, in ``room``."""
        self.positions[room] = position
        self._cursor = None

    @property
    def cursor(self) -> str:
        if self._cursor is None:
            self._cursor = encode_cursor(self.positions)
        return self._cursor

    def hello(self, hello: dict[str, Any]) -> bytes:
        """The first chunk: reconnect advice, then ``hello`` with every room's position."""
        positions = {room: p.to_dict() for room, p in self.positions.items()}
        text = orjson.dumps({**hello, "positions": positions}).decode()
        return (f"retry: {self._retry_ms}\nid: {self.cursor}\n" + dialogue_frame(text)).encode()

    def render(self, items: list[Queued]) -> bytes:
        """One chunk for everything the connection has queued."""
        parts: list[str] = []
        for item in items:
            if isinstance(item, QueuedEvent):
                known = self.positions.get(item.room)
                if known is not None and item.seq > known.seq:
                    self.positions[item.room] = Position(item.seq, known.epoch)
                    self._cursor = None
                parts.append(f"id: {self.cursor}\nevent: {event_field(item.event)}\n"
                             f"data: {item.text}\n\n")
            elif item.startswith("id: "):  # an event's SSE message, built by the hub
                parts.append(item)
            else:
                parts.append(dialogue_frame(item))
        return "".join(parts).encode()
