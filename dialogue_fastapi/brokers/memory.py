"""The in-process broker: one node, everything in memory.

Its state lives as long as the broker object: restarting the ASGI server
around the same ``Dialogue`` keeps positions; a new process starts new epochs
unless a store restores them (:meth:`MemoryBroker.restore`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from collections import OrderedDict, deque
from typing import Any

import orjson

from ..core.errors import Unavailable
from ..core.types import EventMessage, Position, PresenceEntry
from .base import ControlSink, EventSink, Published, StoredRooms


class MemoryPresence:
    """Presence for one process."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, PresenceEntry]] = {}
        self._users: dict[str, dict[str, PresenceEntry]] = {}
        self._joined: dict[str, set[str]] = {}  # client -> its rooms (a disconnect visits those)

    async def join(self, room: str, entry: PresenceEntry, max_size: int | None) -> bool:
        members = self._rooms.setdefault(room, {})
        if entry.client_id in members:
            return True
        if max_size is not None and len(members) >= max_size:
            if not members:
                del self._rooms[room]
            return False
        members[entry.client_id] = entry
        self._joined.setdefault(entry.client_id, set()).add(room)
        return True

    async def leave(self, room: str, client_id: str) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.pop(client_id, None)
            if not members:
                del self._rooms[room]
        rooms = self._joined.get(client_id)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._joined[client_id]

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
        for room in list(self._joined.get(entry.client_id, ())):
            await self.leave(room, entry.client_id)

    async def clients_of(self, user_id: str) -> list[str]:
        return list(self._users.get(user_id, {}))

    def drop_room(self, room: str) -> None:
        for client_id in self._rooms.pop(room, {}):
            rooms = self._joined.get(client_id)
            if rooms is not None:
                rooms.discard(room)
                if not rooms:
                    del self._joined[client_id]

    def has_members(self, room: str) -> bool:
        return bool(self._rooms.get(room))


class _RoomLog:
    """One room's position and hot events, kept as encoded frames (str: not tracked by the
    garbage collector, so a node holding a million hot events scans none of them; not
    orjson's bytes, whose buffer keeps its initial 1-4 KiB however short the frame)."""

    __slots__ = ("epoch", "history", "keys", "seq", "size", "window")

    def __init__(self) -> None:
        self.epoch = secrets.token_urlsafe(8)
        self.seq = 0
        self.window: deque[str] = deque()  # seqs seq-len+1 .. seq, in order, no gap
        self.keys: OrderedDict[str, int] = OrderedDict()  # sender+key -> seq, in seq order
        self.history: dict[str, deque[str]] = {}  # per event, its definition's depth
        self.size = 0  # bytes held in window and history (see _cost)

    def first(self) -> int:
        """The seq of the oldest event in the window."""
        return self.seq - len(self.window) + 1

    def frame(self, seq: int) -> str | None:
        index = seq - self.first()
        return self.window[index] if 0 <= index < len(self.window) else None

    def shift(self) -> int:
        """Drop the oldest windowed event (and idempotency keys of events no longer held)."""
        dropped = _cost(self.window.popleft())
        first, keys = self.first(), self.keys
        while keys:
            oldest = next(iter(keys.values()))
            if oldest >= first:
                break
            keys.popitem(last=False)
        return dropped


def _cost(frame: str) -> int:
    """What one hot event holds: the str object and its slot in a deque."""
    return sys.getsizeof(frame) + 8


def _key(message: EventMessage) -> str | None:
    """Idempotency keys belong to their sender: two users may both use "1"."""
    if message.idempotency_key is None:
        return None
    return f"{message.from_}\x00{message.idempotency_key}"


def _held(frames: deque[str]) -> int:
    return sum(map(_cost, frames))


def _encoded(message: EventMessage) -> str:
    try:
        return orjson.dumps(message.to_wire()).decode()
    except TypeError:  # what orjson cannot write (an integer past 64 bits) the json module can
        return json.dumps(message.to_wire(), default=str)


def _decoded(frame: str) -> EventMessage:
    return EventMessage.from_wire(orjson.loads(frame))


class MemoryBroker:
    """``memory://``: positions, hot history and fan-out inside one process.

    ``hot_bytes`` bounds the hot events of all rooms together (0: no bound): over it, the
    oldest events of the least recently active rooms are dropped first; recovery past them
    is served from the store, or answers ``recovered: false`` without one. With a store
    (:meth:`use_store`), a room this broker does not hold (never seen since start, or
    evicted when idle) continues from its stored position and epoch.
    """

    def __init__(self, hot_bytes: int = 0) -> None:
        self.presence = MemoryPresence()
        self._logs: OrderedDict[str, _RoomLog] = OrderedDict()  # least recently active first
        self._subscribed: set[str] = set()
        self._on_event: EventSink | None = None
        self._on_control: ControlSink | None = None
        self._store: StoredRooms | None = None
        self._loading: dict[str, asyncio.Future[Position | None]] = {}
        self.hot_bytes = hot_bytes
        self.held_bytes = 0

    def use_store(self, store: StoredRooms | None) -> None:
        self._store = store

    async def start(self, on_event: EventSink, on_control: ControlSink) -> None:
        self._on_event, self._on_control = on_event, on_control

    async def stop(self) -> None:
        self._on_event = self._on_control = None
        self._subscribed.clear()

    async def _log(self, room: str) -> _RoomLog:
        log = self._logs.get(room)
        return log if log is not None else await self._open(room)

    async def _open(self, room: str) -> _RoomLog:
        """A room this broker does not hold: from its stored position, else a new epoch."""
        stored: Position | None = None
        if self._store is not None:
            loading = self._loading.get(room)
            if loading is None:
                loading = self._loading[room] = asyncio.ensure_future(
                    self._store.position_of(room))
                loading.add_done_callback(lambda _: self._loading.pop(room, None))
            try:
                stored = await asyncio.shield(loading)
            except Exception as exc:
                raise Unavailable(f"the position of room '{room}' cannot be read from the "
                                  f"database now ({exc}); retry later") from None
        log = self._logs.get(room)  # another caller may have opened it meanwhile
        if log is None:
            log = self._logs[room] = _RoomLog()
            if stored is not None:
                log.seq, log.epoch = stored.seq, stored.epoch
        return log

    async def publish(self, message: EventMessage, window: int, history: int = 0) -> Published:
        room = message.room
        log = self._logs.get(room)
        if log is None:
            log = await self._open(room)
        key = _key(message)
        if key is not None and key in log.keys:
            frame = log.frame(log.keys[key])
            if frame is not None:
                return Published(_decoded(frame), duplicate=True, epoch=log.epoch)
        log.seq += 1
        message.seq = log.seq
        if not message.ts:
            message.ts = int(time.time() * 1000)
        frame = message.frame = _encoded(message)
        cost = _cost(frame)
        log.window.append(frame)
        added = cost
        if key is not None:
            log.keys[key] = log.seq
        limit = max(window, 1)
        while len(log.window) > limit:
            added -= log.shift()
        if history > 0:
            kept = log.history.get(message.event)
            if kept is None or kept.maxlen != history:  # first event, or a new depth
                before = _held(kept) if kept is not None else 0
                kept = log.history[message.event] = deque(kept or (), maxlen=history)
                added += _held(kept) - before
            if len(kept) == history:
                added -= _cost(kept[0])
            kept.append(frame)
            added += cost
        log.size += added
        self.held_bytes += added
        self._logs.move_to_end(room)
        if self.hot_bytes and self.held_bytes > self.hot_bytes:
            self._trim()
        recipients = 0
        if self._on_event is not None and room in self._subscribed:
            recipients = self._on_event(message)
        return Published(message, recipients=recipients, epoch=log.epoch)

    def _trim(self) -> None:
        """Over the node's budget: the oldest events of the least recently active rooms go."""
        for log in self._logs.values():
            while self.held_bytes > self.hot_bytes and log.window:
                dropped = log.shift()
                log.size -= dropped
                self.held_bytes -= dropped
            for kept in log.history.values():
                while self.held_bytes > self.hot_bytes and kept:
                    dropped = _cost(kept.popleft())
                    log.size -= dropped
                    self.held_bytes -= dropped
            if self.held_bytes <= self.hot_bytes:
                return

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    async def position(self, room: str) -> Position:
        log = await self._log(room)
        return Position(log.seq, log.epoch)

    async def read(
        self, room: str, after: int, *, partial: bool = False
    ) -> list[EventMessage] | None:
        log = await self._log(room)
        if after >= log.seq:
            return []
        if not log.window:
            return [] if partial else None
        first = log.first()
        if first > after + 1 and not partial:
            return None
        window = log.window
        return [_decoded(window[i]) for i in range(max(after + 1 - first, 0), len(window))]

    async def recent(self, room: str) -> list[EventMessage]:
        log = self._logs.get(room)
        if log is None:
            return []
        merged = [_decoded(frame) for kept in log.history.values() for frame in kept]
        merged.sort(key=lambda m: m.seq)
        return merged

    async def control(self, frame: dict[str, Any]) -> None:
        if self._on_control is not None:
            await self._on_control(frame)

    async def drop_room(self, room: str) -> None:
        self._forget(room)
        self.presence.drop_room(room)

    def evict(self, room: str) -> bool:
        """Forget an idle room's position and hot events (False while it has members): it
        continues from the store when used again, or in a new epoch without one."""
        if self.presence.has_members(room):
            return False
        self._forget(room)
        return True

    def _forget(self, room: str) -> None:
        log = self._logs.pop(room, None)
        if log is not None:
            self.held_bytes -= log.size

    async def restore(self, room: str, position: Position) -> None:
        log = self._logs.get(room)
        if log is None:
            log = self._logs[room] = _RoomLog()
        if log.seq < position.seq or (log.seq == 0 and not log.window):
            log.seq, log.epoch = position.seq, position.epoch
            log.window.clear()
            log.keys.clear()
            log.history.clear()
            self.held_bytes -= log.size
            log.size = 0

    async def healthy(self) -> bool:
        return self._on_event is not None
