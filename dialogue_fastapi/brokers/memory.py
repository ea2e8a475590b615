"""The in-process broker: one node, everything in memory.

Its state lives as long as the broker object: restarting the ASGI server
around the same ``Dialogue`` keeps positions; a new process starts new epochs
unless a store restores them (:meth:`MemoryBroker.restore`).
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from typing import Any

from ..core.types import EventMessage, Position, PresenceEntry
from .base import ControlSink, EventSink, Published


class MemoryPresence:
    """Presence for one process."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, PresenceEntry]] = {}
        self._users: dict[str, dict[str, PresenceEntry]] = {}

    async def join(self, room: str, entry: PresenceEntry, max_size: int | None) -> bool:
        members = self._rooms.setdefault(room, {})
        if entry.client_id in members:
            return True
        if max_size is not None and len(members) >= max_size:
            return False
        members[entry.client_id] = entry
        return True

    async def leave(self, room: str, client_id: str) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.pop(client_id, None)
            if not members:
                del self._rooms[room]

    async def members(self, room: str) -> list[PresenceEntry]:
        return list(self._rooms.get(room, {}).values())

    async def count(self, room: str) -> int:
        return len(self._rooms.get(room, {}))

    async def connect(self, entry: PresenceEntry) -> None:
        self._users.setdefault(entry.user_id, {})[entry.client_id] = entry

    async def disconnect(self, entry: PresenceEntry) -> None:
        clients = self._users.get(entry.user_id)
        if clients is not None:
            clients.pop(entry.client_id, None)
            if not clients:
                del self._users[entry.user_id]
        for room in [r for r, m in self._rooms.items() if entry.client_id in m]:
            await self.leave(room, entry.client_id)

    async def clients_of(self, user_id: str) -> list[str]:
        return list(self._users.get(user_id, {}))

    def drop_room(self, room: str) -> None:
        self._rooms.pop(room, None)


class _RoomLog:
    __slots__ = ("epoch", "history", "keys", "seq", "window")

    def __init__(self) -> None:
        self.epoch = secrets.token_urlsafe(8)
        self.seq = 0
        self.window: deque[EventMessage] = deque()
        self.keys: dict[tuple[str, str], EventMessage] = {}
        self.history: dict[str, deque[EventMessage]] = {}


def _key(message: EventMessage) -> tuple[str, str] | None:
    """Idempotency keys belong to their sender: two users may both use "1"."""
    if message.idempotency_key is None:
        return None
    return (message.from_, message.idempotency_key)


class MemoryBroker:
    """``memory://``: positions, hot history and fan-out inside one process."""

    def __init__(self) -> None:
        self.presence = MemoryPresence()
        self._logs: dict[str, _RoomLog] = {}
        self._subscribed: set[str] = set()
        self._on_event: EventSink | None = None
        self._on_control: ControlSink | None = None

    async def start(self, on_event: EventSink, on_control: ControlSink) -> None:
        self._on_event, self._on_control = on_event, on_control

    async def stop(self) -> None:
        self._on_event = self._on_control = None
        self._subscribed.clear()

    def _log(self, room: str) -> _RoomLog:
        log = self._logs.get(room)
        if log is None:
            log = self._logs[room] = _RoomLog()
        return log

    async def publish(self, message: EventMessage, window: int, history: int = 0) -> Published:
        log = self._log(message.room)
        key = _key(message)
        if key is not None and key in log.keys:
            return Published(log.keys[key], duplicate=True, epoch=log.epoch)
        log.seq += 1
        message.seq = log.seq
        if not message.ts:
            message.ts = int(time.time() * 1000)
        log.window.append(message)
        if key is not None:
            log.keys[key] = message
        while len(log.window) > max(window, 1):
            dropped_key = _key(log.window.popleft())
            if dropped_key is not None:
                log.keys.pop(dropped_key, None)
        if history > 0:
            kept = log.history.get(message.event)
            if kept is None or kept.maxlen != history:
                kept = log.history[message.event] = deque(kept or (), maxlen=history)
            kept.append(message)
        recipients = 0
        if self._on_event is not None and message.room in self._subscribed:
            recipients = self._on_event(message)
        return Published(message, recipients=recipients, epoch=log.epoch)

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    async def position(self, room: str) -> Position:
        log = self._log(room)
        return Position(log.seq, log.epoch)

    async def read(
        self, room: str, after: int, *, partial: bool = False
    ) -> list[EventMessage] | None:
        log = self._log(room)
        if after >= log.seq:
            return []
        if not log.window:
            return [] if partial else None
        if log.window[0].seq > after + 1 and not partial:
            return None
        first = log.window[0].seq
        return list(log.window)[max(after + 1 - first, 0):]

    async def recent(self, room: str) -> list[EventMessage]:
        log = self._logs.get(room)
        if log is None:
            return []
        merged = [m for kept in log.history.values() for m in kept]
        merged.sort(key=lambda m: m.seq)
        return merged

    async def control(self, frame: dict[str, Any]) -> None:
        if self._on_control is not None:
            await self._on_control(frame)

    async def drop_room(self, room: str) -> None:
        self._logs.pop(room, None)
        self.presence.drop_room(room)

    async def restore(self, room: str, position: Position) -> None:
        log = self._log(room)
        if log.seq < position.seq or (log.seq == 0 and not log.window):
            log.seq, log.epoch = position.seq, position.epoch
            log.window.clear()
            log.keys.clear()
            log.history.clear()

    async def healthy(self) -> bool:
        return self._on_event is not None
