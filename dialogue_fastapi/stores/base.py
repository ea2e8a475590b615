"""The EventStore seam: durable events beyond the broker's hot window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..types import EventMessage


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A page of a room's events; ``after`` pages forward, ``before`` backward."""

    room: str
    limit: int = 50
    before: int | None = None
    after: int | None = None
    event: str | None = None
    sender: str | None = None
    since_ts: int | None = None
    until_ts: int | None = None


@runtime_checkable
class EventStore(Protocol):
    """Stores events and answers history queries. Implementations: memory, SQL."""

    async def start(self) -> None:
        """Open connections, create what is missing."""
        ...

    async def stop(self) -> None:
        """Flush and close."""
        ...

    async def append(self, messages: list[EventMessage]) -> None:
        """Store events (already numbered by the broker); idempotent per (room, seq)."""
        ...

    async def query(self, query: HistoryQuery) -> list[EventMessage]:
        """Events matching the query, ascending seq."""
        ...

    async def read_after(self, room: str, after: int, limit: int) -> list[EventMessage]:
        """Up to ``limit`` events with seq > after, ascending, with no filter."""
        ...

    async def delete_room(self, room: str) -> None:
        """Forget every event of the room."""
        ...
