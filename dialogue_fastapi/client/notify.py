"""Client-level callbacks: connection state and the frames the server sends on its own."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Literal

from .handlers import ConnectionState, Dispatcher, Frame, Handler, HandlerSet, invoke, logger

FrameKind = Literal["direct", "presence", "room_created", "room_deleted", "error"]
StateHandler = Callable[[ConnectionState], Awaitable[None] | None]


class Notifier:
    """Holds the client's handler sets and runs them in frame order."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._frames: dict[FrameKind, HandlerSet[Frame]] = {}
        self._states: HandlerSet[ConnectionState] = HandlerSet()
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, kind: FrameKind, handler: Handler) -> Callable[[], None]:
        """Register a handler for one kind of server frame; returns its remover."""
        return self._frames.setdefault(kind, HandlerSet()).add(handler)

    def has(self, kind: FrameKind) -> bool:
        """Whether anyone listens to ``kind``."""
        return bool(self._frames.get(kind))

    async def emit(self, kind: FrameKind, frame: Frame) -> None:
        """Queue the handlers of ``kind`` for ``frame`` (in order with room events)."""
        if self.has(kind):
            await self._dispatcher.put(functools.partial(self._run, kind), frame)

    async def _run(self, kind: FrameKind, frame: Frame) -> None:
        handlers = self._frames.get(kind)
        for handler in handlers.snapshot() if handlers else []:
            await invoke(handler, frame)

    def add_state(self, handler: StateHandler) -> Callable[[], None]:
        """Register a connection-state callback; returns its remover."""
        return self._states.add(handler)

    def state_changed(self, state: ConnectionState) -> None:
        """Call sync state handlers now; run async ones as tasks."""
        for handler in self._states.snapshot():
            try:
                result = handler(state)
            except Exception:
                logger.exception("dialogue client state handler %r failed", handler)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(invoke(_awaited, result))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)


async def _awaited(awaitable: Awaitable[None]) -> None:
    await awaitable
