"""One publish as the pipeline runs it, whatever the transport: the typed request the
use case builds (the room already resolved) and the tools it runs with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.types import Identity
from ..limits.events import Limiter
from ..rooms.registry import Room
from .lane import Turn
from .pipeline import Middleware


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~0.3 us a field, per publish
class PublishTools:
    """The limiter and the global middleware a publish runs with. Routes receive them as a
    FastAPI dependency, so ``app.dependency_overrides`` can replace them in tests."""

    limiter: Limiter
    middleware: list[Middleware]


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~0.3 us a field, per publish
class Submission:
    """What is published, where, and who sends it from where."""

    room: Room
    event: str
    data: Any = None
    meta: dict[str, Any] | None = None
    idempotency_key: str | None = None
    identity: Identity | None = None  # None: the application (never rate limited)
    transport: str = "server"
    client_id: str | None = None
    ip: str | None = None
    joined: bool | None = None  # False: a connection that has not joined (NOT_IN_ROOM)
    tools: PublishTools | None = None  # None: the node's own
    turn: Turn | None = None  # its place in its connection's order (WebSocket lanes)

    @property
    def sender(self) -> str:
        return self.identity.user_id if self.identity is not None else "server"
