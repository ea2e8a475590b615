"""Server-side ``on(room, event, handler)`` registrations."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..core.hooks import call_maybe_async
from ..core.types import EventMessage

logger = logging.getLogger("dialogue_fastapi")
Handler = Callable[[EventMessage], Any]


class HandlerRegistry:
    """Handlers by room and event name; ``"*"`` matches any, and a room family's pattern
    (``"dm:{a}:{b}"``) each of its instances."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], list[Handler]] = {}

    def add(self, room: str, event: str, handler: Handler) -> Callable[[], None]:
        key = (room, event)
        self._handlers.setdefault(key, []).append(handler)

        def remove() -> None:
            handlers = self._handlers.get(key, [])
            if handler in handlers:
                handlers.remove(handler)

        return remove

    def matching(self, message: EventMessage, family: str | None = None) -> list[Handler]:
        """The room's handlers, then its family's (``family``: the pattern), then ``"*"``'s."""
        found: list[Handler] = []
        rooms = (message.room,) if family is None else (message.room, family)
        for room in (*rooms, "*"):
            found.extend(self._handlers.get((room, message.event), ()))
            found.extend(self._handlers.get((room, "*"), ()))
        return found

    async def run(self, message: EventMessage, family: str | None = None) -> None:
        """Run every matching handler in order; their errors are logged."""
        for handler in self.matching(message, family):
            try:
                await call_maybe_async(handler, message)
            except Exception:
                logger.exception(
                    "on-handler %r failed for %s/%s seq %d",
                    handler, message.room, message.event, message.seq,
                    extra={"room": message.room, "event": message.event, "seq": message.seq},
                )
