"""One client connection, whatever its transport: identity and a bounded send queue.

Each connection has exactly one writer task draining its queue, so a slow
client only ever slows itself: when its queue exceeds the message or byte
bound it is closed with 4009 (slow consumer) and the room keeps its rate.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ..core.errors import CloseCode
from ..core.types import EventMessage, Identity, PresenceEntry

logger = logging.getLogger("dialogue_fastapi")


class Transport(Protocol):
    """How frames reach one client (WebSocket, SSE)."""

    kind: str

    async def send(self, text: str) -> None:
        """Write one frame; raises when the peer is gone."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close the connection with a protocol close code."""
        ...


@dataclass(slots=True)
class Membership:
    """A connection's place in one room: what it hears and how far it has heard."""

    room: str
    subscriptions: frozenset[str] | None  # None: every event but the excluded
    last_seq: int = 0
    pending: list[tuple[EventMessage, str]] | None = field(default_factory=list)
    excluded: frozenset[str] = frozenset()

    def wants(self, event: str) -> bool:
        if self.subscriptions is None:
            return event not in self.excluded
        return event in self.subscriptions

    def subscribe(self, events: frozenset[str] | None) -> None:
        """Add events (None: all of them)."""
        if events is None:
            self.subscriptions, self.excluded = None, frozenset()
        elif self.subscriptions is None:
            self.excluded = self.excluded - events
        else:
            self.subscriptions = self.subscriptions | events

    def unsubscribe(self, events: frozenset[str]) -> None:
        if self.subscriptions is None:
            self.excluded = self.excluded | events
        else:
            self.subscriptions = self.subscriptions - events

    def describe(self) -> dict[str, Any]:
        """The reply fields: ``subscriptions`` (list or ``"*"``), and ``excluded`` if any."""
        if self.subscriptions is not None:
            return {"subscriptions": sorted(self.subscriptions)}
        if self.excluded:
            return {"subscriptions": "*", "excluded": sorted(self.excluded)}
        return {"subscriptions": "*"}


@dataclass(frozen=True, slots=True)
class QueueLimits:
    max_messages: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """An event queued on a connection that frames events itself (SSE: an ``id:`` cursor
    computed when the event is written, not when it is queued)."""

    room: str
    seq: int
    event: str
    text: str  # the envelope, encoded once for every recipient


Queued = str | QueuedEvent
#: how a transport frames a room event: (message, its encoded envelope, a dict shared by
#: every recipient of this one delivery) -> what to queue. None: the envelope as it is.
EventFramer = Callable[[EventMessage, str, dict[str, str]], Queued]


class Connection:
    """A live client: who it is, the rooms it joined, and its send queue."""

    def __init__(
        self, transport: Transport, identity: Identity, limits: QueueLimits,
        *, ip: str | None = None, framer: EventFramer | None = None,
    ) -> None:
        self.client_id = "c_" + secrets.token_hex(6)
        self.identity = identity
        self._entry: PresenceEntry | None = None
        self.transport = transport
        self.ip = ip
        self.rooms: dict[str, Membership] = {}
        self.closed = False
        self.finished = False  # its transport has ended and its cleanup has started
        self.close_code: int | None = None
        self.overflow: str | None = None  # "queue_messages" or "queue_bytes" once it overflowed
        self.dropped = 0  # messages thrown away by the overflow (the queue and the refused one)
        self.delivered = 0  # room events queued to it (read by the metrics at scrape time)
        self.reported_gone = False  # another node already ran its leave/disconnect hooks
        self._limits = limits
        self._queue: deque[Queued | _Close] = deque()
        self.framer = framer  # set by transports that frame events themselves (SSE)
        self.coalesce = 0  # next_batch waits one loop turn when fewer items are queued
        self.tools: Any = None  # the PublishTools its publishes run with (from the route)
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self.last_seen = time.monotonic()
        self.on_close: Callable[[], None] | None = None

    @property
    def user_id(self) -> str:
        return self.identity.user_id

    @property
    def dropped_by_overflow(self) -> bool:
        """Closed as a slow consumer (its queue overflowed)."""
        return self.overflow is not None

    def entry(self) -> PresenceEntry:
        """This connection in presence (one object, shared by every room it is in)."""
        entry = self._entry
        if entry is None or entry.user_id != self.identity.user_id:
            entry = self._entry = PresenceEntry(self.identity.user_id, self.client_id)
        return entry

    def send_text(self, text: str) -> bool:
        """Queue an encoded frame; False if the connection is closing.

        The byte bound counts characters of the JSON text (bytes for ASCII).
        """
        return self._enqueue(text, len(text))

    def queue_event(self, item: QueuedEvent) -> bool:
        """Queue an event already split into its parts (replayed events of an SSE stream)."""
        return self._enqueue(item, len(item.text))

    def send_event(
        self, message: EventMessage, text: str, shared: dict[str, str] | None = None
    ) -> bool:
        """Queue a room event (``text``: its encoded envelope), framed by the transport's
        framer if it has one; False if closing."""
        framer = self.framer
        if framer is None:
            queued = self._enqueue(text, len(text))
        else:
            item = framer(message, text, {} if shared is None else shared)
            queued = self._enqueue(item, len(item) if isinstance(item, str) else len(item.text))
        self.delivered += queued
        return queued

    def _enqueue(self, item: Queued, size: int) -> bool:
        if self.closed:
            return False
        # one frame above the byte bound (a large recovery reply) still goes out when
        # the queue is empty: the bound is about a backlog, not a single frame
        if len(self._queue) >= self._limits.max_messages:
            self._overflow("queue_messages")
            return False
        if self._queued_bytes + size > self._limits.max_bytes and self._queue:
            self._overflow("queue_bytes")
            return False
        self._queue.append(item)
        self._queued_bytes += size
        self._wake.set()
        return True

    def hello(self, heartbeat: float) -> dict[str, Any]:
        """The first frame of every transport (protocol section 2)."""
        return {"op": "hello", "client_id": self.client_id, "user_id": self.user_id,
                "protocol": 1, "heartbeat": heartbeat}

    def send_frame(self, frame: dict[str, Any]) -> bool:
        """Encode and queue one server frame."""
        return self.send_text(orjson.dumps(frame).decode())

    def close(self, code: int, reason: str, *, reconnect: bool | None = None) -> None:
        """Send ``disconnect`` after what is queued, then close with ``code``."""
        if self.closed:
            return
        if reconnect is None:
            reconnect = code in CloseCode.RECONNECT
        frame = {"op": "disconnect", "code": code, "reason": reason, "reconnect": reconnect}
        self._queue.append(orjson.dumps(frame).decode())
        self._queue.append(_Close(code, reason))
        self.closed = True
        self.close_code = code
        self._wake.set()
        if self.on_close is not None:
            self.on_close()

    def _overflow(self, reason: str) -> None:
        logger.warning(
            "closing %s (user %s): send queue overflow (%d messages, %d bytes)",
            self.client_id, self.user_id, len(self._queue), self._queued_bytes,
            extra={"client_id": self.client_id, "user_id": self.user_id},
        )
        self.overflow, self.dropped = reason, len(self._queue) + 1
        self._queue.clear()
        self._queued_bytes = 0
        self.close(CloseCode.SLOW_CONSUMER, "slow consumer: send queue overflowed")

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def run_writer(self) -> None:
        """Drain the queue into the transport until closed or the peer is gone."""
        queue, send = self._queue, self.transport.send
        while True:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            item = queue.popleft()  # one at a time: what waits to be sent counts in the bound
            if isinstance(item, _Close):
                await self.transport.close(item.code, item.reason)
                return
            text = item if isinstance(item, str) else item.text
            self._queued_bytes -= len(text)
            await send(text)

    async def next_batch(self) -> tuple[list[Queued], _Close | None]:
        """Everything queued now (waiting until something is), and the close if it follows."""
        queue = self._queue
        while not queue:
            self._wake.clear()
            await self._wake.wait()
        if len(queue) < self.coalesce:
            await asyncio.sleep(0)  # one turn of the loop: what else is being published joins
        items: list[Queued] = []
        while queue:
            item = queue.popleft()
            if isinstance(item, _Close):
                return items, item
            self._queued_bytes -= len(item) if isinstance(item, str) else len(item.text)
            items.append(item)
        return items, None
