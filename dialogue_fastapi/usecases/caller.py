"""Who asks: the identity, transport and connection a use case runs for."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.types import Identity
from ..node.connection import Connection
from ..publish.lane import Turn
from ..publish.submission import PublishTools


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~0.3 us a field, per publish
class Caller:
    """The party a use case runs for. ``identity`` None is the application itself
    (``dialogue.trigger`` and friends): no access checks, no limits."""

    identity: Identity | None
    transport: str  # "websocket", "sse", "rest" or "server"
    client_id: str | None = None
    ip: str | None = None
    tools: PublishTools | None = None
    conn: Connection | None = None  # the live connection (WebSocket, SSE)
    turn: Turn | None = None  # a WebSocket publish's place in its connection's order

    @classmethod
    def server(cls, from_: str = "server") -> Caller:
        """The application; ``from_`` other than "server" publishes as that user."""
        return cls(None if from_ == "server" else Identity(from_), "server")

    @classmethod
    def of(cls, conn: Connection, turn: Turn | None = None) -> Caller:
        """A live connection (its transport, identity, address and tools)."""
        return cls(conn.identity, conn.transport.kind, conn.client_id, conn.ip, conn.tools, conn,
                   turn)

    @property
    def is_server(self) -> bool:
        return self.transport == "server"

    @property
    def user_id(self) -> str | None:
        return self.identity.user_id if self.identity is not None else None

    def member_of(self, room_id: str) -> bool | None:
        """Whether the connection joined the room; None for callers without one (REST)."""
        return None if self.conn is None else room_id in self.conn.rooms
