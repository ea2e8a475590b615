"""The node's fan-out: which local connections are in which room.

The broker hands every event of a room this node listens to to
:meth:`Hub.deliver`, in seq order. The event is encoded once and queued on
each subscribed member; a transport that frames events its own way (SSE) does
so through the connection's framer, never here. A member still joining buffers live events in its
``pending`` list until its join reply is queued; :meth:`Hub.release` then
flushes exactly the ones after the replayed position (no gap, no duplicate).
An event published with tracing on carries a ``traceparent``: its fan-out
here runs in one ``dialogue.deliver`` span (per event, never per recipient).
"""

from __future__ import annotations

import orjson

from ..brokers.base import Broker
from ..core.tracing import NO_TRACING, Tracing
from ..core.types import EventMessage
from .connection import Connection, Membership


class Hub:
    """Local connections by room and by user, and the fan-out loop."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._rooms: dict[str, dict[str, tuple[Connection, Membership]]] = {}
        self.connections: dict[str, Connection] = {}
        self._users: dict[str, dict[str, Connection]] = {}
        self.delivered = 0
        self.tracing: Tracing = NO_TRACING  # set by the facade (tracing=)

    def deliver(self, message: EventMessage) -> int:
        """Queue the event on every local member subscribed to it; returns how many."""
        if message.traceparent is not None:  # published with tracing on, here or elsewhere
            return self.tracing.deliver(message, self._fan_out)
        return self._fan_out(message)

    def _fan_out(self, message: EventMessage) -> int:
        members = self._rooms.get(message.room)
        if not members:
            return 0
        text = message.frame
        if text is None:
            text = orjson.dumps(message.to_wire()).decode()
        seq, event, sent = message.seq, message.event, 0
        shared: dict[str, str] = {}  # what framing transports build once per delivery
        for conn, membership in members.values():
            if membership.pending is not None:
                if membership.wants(event):
                    membership.pending.append((message, text))
                continue
            if seq <= membership.last_seq:
                continue
            membership.last_seq = seq
            if membership.wants(event) and conn.send_event(message, text, shared):
                sent += 1
        self.delivered += sent
        return sent

    # connections -----------------------------------------------------------
    def add_connection(self, conn: Connection) -> None:
        self.connections[conn.client_id] = conn
        self._users.setdefault(conn.user_id, {})[conn.client_id] = conn

    def remove_connection(self, conn: Connection) -> None:
        self.connections.pop(conn.client_id, None)
        clients = self._users.get(conn.user_id)
        if clients is not None:
            clients.pop(conn.client_id, None)
            if not clients:
                del self._users[conn.user_id]

    def local_clients_of(self, user_id: str) -> list[Connection]:
        return list(self._users.get(user_id, {}).values())

    # rooms -------------------------------------------------------------------
    async def attach(
        self, conn: Connection, room: str, subscriptions: frozenset[str] | None
    ) -> Membership:
        """Add a member in the joining state (live events are buffered)."""
        membership = Membership(room, subscriptions)
        members = self._rooms.get(room)
        if members is None:
            members = self._rooms[room] = {}
            members[conn.client_id] = (conn, membership)
            conn.rooms[room] = membership
            await self._broker.subscribe(room)
        else:
            members[conn.client_id] = (conn, membership)
            conn.rooms[room] = membership
        return membership

    def release(self, conn: Connection, membership: Membership, position: int) -> None:
        """End the joining state: deliver buffered events after ``position``."""
        pending, membership.pending = membership.pending or [], None
        membership.last_seq = max(membership.last_seq, position)
        for message, text in pending:
            if message.seq > membership.last_seq:
                membership.last_seq = message.seq
                conn.send_event(message, text)

    async def detach(self, conn: Connection, room: str) -> bool:
        """Remove a member; True if it was one."""
        membership = conn.rooms.pop(room, None)
        members = self._rooms.get(room)
        if members is None or members.pop(conn.client_id, None) is None:
            return membership is not None
        if not members:
            del self._rooms[room]
            await self._broker.unsubscribe(room)
        return True

    def local_members(self, room: str) -> list[Connection]:
        return [conn for conn, _ in self._rooms.get(room, {}).values()]

    def room_ids(self) -> list[str]:
        return list(self._rooms)
