"""The Broker seam: positions, hot history, fan-out and presence for rooms.

A broker assigns every event of a room its ``seq`` (strictly increasing by
one, cluster-wide), keeps a bounded window of recent events (hot history used
for recovery), and hands every event of a subscribed room to the node's sink,
in seq order. Implementations: ``memory://`` (one process) and ``redis://``.

With persistence, the node calls :meth:`Broker.restore` on start for every
room the store knows, so that ``seq`` continues and the ``epoch`` stays the
same across a restart. A broker adopts the stored position only if its own
``seq`` for the room is lower (a shared broker that kept its state, e.g.
Redis, is ahead or equal and ignores it); adopting it empties the room's
window, so recovery below that point is answered from the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..core.types import EventMessage, Position, PresenceEntry

EventSink = Callable[[EventMessage], int]
ControlSink = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Published:
    """The outcome of a publish: the stored message, and whether it was a retry."""

    message: EventMessage
    duplicate: bool = False
    recipients: int | None = None  # known when delivery happened in this call
    epoch: str | None = None  # the room's epoch the seq belongs to, where the broker says


@runtime_checkable
class Presence(Protocol):
    """Who is where, cluster-wide: room membership with size limits, and users."""

    async def join(self, room: str, entry: PresenceEntry, max_size: int | None) -> bool:
        """Add the connection to the room; False (and no change) if at max_size."""
        ...

    async def leave(self, room: str, client_id: str) -> None:
        """Remove the connection from the room (no error if absent)."""
        ...

    async def members(self, room: str) -> list[PresenceEntry]:
        """Every connection in the room, on every node."""
        ...

    async def count(self, room: str) -> int:
        """The cluster-wide number of connections in the room."""
        ...

    async def connect(self, entry: PresenceEntry) -> None:
        """Record a live connection of a user."""
        ...

    async def disconnect(self, entry: PresenceEntry) -> None:
        """Forget a connection (and remove it from every room)."""
        ...

    async def clients_of(self, user_id: str) -> list[str]:
        """The client ids of a user's live connections, cluster-wide."""
        ...


@runtime_checkable
class Broker(Protocol):
    """Positions, hot history and fan-out of room events."""

    @property
    def presence(self) -> Presence:
        """Cluster-wide presence and room sizes."""
        ...

    async def start(self, on_event: EventSink, on_control: ControlSink) -> None:
        """Connect; deliver subscribed rooms' events to ``on_event``, control frames to ``on_control``."""
        ...

    async def stop(self) -> None:
        """Disconnect and release every resource."""
        ...

    async def publish(self, message: EventMessage, window: int, history: int = 0) -> Published:
        """Assign the next seq, keep the newest ``window`` events for recovery and the
        newest ``history`` events of this name for history, then fan out. A repeated
        (sender, idempotency key) in the window returns the original, ``duplicate``."""
        ...

    async def recent(self, room: str) -> list[EventMessage]:
        """The room's hot history: per event name its newest ``history``, ascending seq."""
        ...

    async def subscribe(self, room: str) -> None:
        """Start receiving the room's events on this node."""
        ...

    async def unsubscribe(self, room: str) -> None:
        """Stop receiving the room's events on this node."""
        ...

    async def position(self, room: str) -> Position:
        """The room's last seq and its epoch."""
        ...

    async def read(
        self, room: str, after: int, *, partial: bool = False
    ) -> list[EventMessage] | None:
        """Every event with seq > after, or None if some left the window (unless partial)."""
        ...

    async def control(self, frame: dict[str, Any]) -> None:
        """Send a control frame (room created/deleted, direct message...) to every node."""
        ...

    async def drop_room(self, room: str) -> None:
        """Forget the room's seq, history and presence (its epoch changes)."""
        ...

    async def restore(self, room: str, position: Position) -> None:
        """Continue the room from a stored position: adopt it if the broker is behind it."""
        ...

    async def healthy(self) -> bool:
        """True when publishing and receiving work."""
        ...


@runtime_checkable
class OrderedSubmit(Protocol):
    """A broker that takes publishes in the order handed over and answers later (the Redis
    broker pipelines them). A connection then keeps several publishes in flight, each
    handed over in send order (``publish_lane``); other brokers publish one at a time."""

    def submit(self, message: EventMessage, window: int, history: int = 0) -> Awaitable[Published]:
        """Queue ``message`` now, behind every earlier submit; await the result later."""
        ...


@dataclass(slots=True)  # not frozen: built per publish (a frozen __init__ costs ~0.3 us a field)
class LimitCheck:
    """The rate limits one publish must fit in, for a broker that checks them inside its own
    publish (:class:`FusedLimits`). Per limit: the ``limits`` library's two sliding-window
    counter keys in ``keys`` (the previous window's, then the current one's), its amount and
    window in seconds in ``args``, and its (scope, limit text) in ``limits`` (the refusal's
    wording). Empty lists: nothing applies, the publish is not limited."""

    keys: list[str]
    args: list[int]
    limits: list[tuple[str, str]]


class LimitRefused(Exception):
    """A fused publish over a limit: nothing was published, no budget spent. ``index``: the
    first refusing limit in ``LimitCheck.limits``; ``retry_after``: seconds until it frees a unit."""

    def __init__(self, index: int, retry_after: float) -> None:
        super().__init__(index, retry_after)
        self.index, self.retry_after = index, retry_after


@runtime_checkable
class FusedLimits(Protocol):
    """A broker that checks and counts a publish's rate limits in the publish's own round trip
    (the Redis broker, for limits kept in its own Redis): the limiter hands it the check."""

    def fuses_limits(self, storage: str) -> bool:
        """True when limits kept in ``storage`` (a ``RateLimit.storage`` URL) can be checked here."""
        ...

    def submit(
        self, message: EventMessage, window: int, history: int = 0,
        limits: LimitCheck | None = None,
    ) -> Awaitable[Published]:
        """``OrderedSubmit.submit``, counting the publish in every limit of ``limits`` first;
        over one of them nothing is published nor counted and the answer raises ``LimitRefused``."""
        ...


PositionLoader = Callable[[str], Awaitable[Position | None]]
EventLoader = Callable[[str, int, int], Awaitable[list[EventMessage]]]  # room, after, limit


@dataclass(frozen=True, slots=True)
class StoredRooms:
    """What a broker may read from the store: a room's position, and its events after a seq.

    ``fence``: how long after the broker lost its data (a Redis restart) a stored position
    may be trusted: long enough for every node's write-behind to store the events it
    acknowledged before the loss, so that their seqs are not given out again."""

    position_of: PositionLoader
    read_after: EventLoader
    fence: float = 0.0


@runtime_checkable
class StoreBacked(Protocol):
    """A shared broker that can lose state (Redis restarted, a subscriber away longer than
    its window) and repairs it from the store when persistence is on."""

    def use_store(self, store: StoredRooms | None) -> None:
        """Read positions and missed events from ``store`` when the broker has none."""
        ...
