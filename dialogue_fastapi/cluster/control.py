"""Cluster-wide control frames, applied on every node by :class:`ControlHandler`.

Frames travel through ``Broker.control`` so that room lifecycle, presence
notices, direct messages and forced disconnects reach every node. A broker
may also hand its own node ``node_lost`` (a dead node's connections left
presence) and ``room_reset`` (the broker lost a room's history), and the node
that removed a dead node's connections ``connections_lost``: their ``on_left``
and ``on_disconnected`` hooks run there, once in the cluster. A node that was
reaped while alive (unreachable longer than the TTL) gets
``connections_evicted``: it closes those connections without running their
hooks again, and their clients reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from ..core.config import Hooks
from ..core.errors import CloseCode
from ..core.events import EventDefinition
from ..core.hooks import fire
from ..core.types import Identity
from ..node.hub import Hub
from ..rooms.registry import RoomRegistry, room_from_spec

logger = logging.getLogger("dialogue_fastapi")


class ControlHandler:
    """Applies control frames to this node's registry and connections."""

    def __init__(
        self, hub: Hub, registry: RoomRegistry, broker_presence: Any,
        events: dict[str, EventDefinition], hooks: Hooks | None = None,
    ) -> None:
        self._hub = hub
        self._registry = registry
        self._presence = broker_presence
        self._events = events
        self._hooks = hooks or Hooks()
        self._hook_runs: set[asyncio.Task[None]] = set()

    async def __call__(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        try:
            if kind == "room_created":
                self._room_created(frame)
            elif kind == "room_deleted":
                await self._room_deleted(frame)
            elif kind == "presence":
                self._presence_notice(frame)
            elif kind == "direct":
                self._direct(frame)
            elif kind == "disconnect_user":
                self._disconnect_user(frame)
            elif kind == "node_lost":
                self._node_lost(frame)
            elif kind == "room_reset":
                self._room_reset(frame)
            elif kind == "connections_lost":
                self._connections_lost(frame)
            elif kind == "connections_evicted":
                self._connections_evicted(frame)
            else:
                logger.warning("unknown control frame %r", kind)
        except Exception:
            logger.exception("control frame %r failed", kind)

    def _broadcast(self, frame: dict[str, Any]) -> None:
        text = orjson.dumps(frame).decode()
        for conn in list(self._hub.connections.values()):
            if conn.transport.kind == "websocket":
                conn.send_text(text)

    def _room_created(self, frame: dict[str, Any]) -> None:
        # the creating node added the room (with its full config) before announcing it
        if frame["spec"]["id"] not in self._registry:
            self._registry.add(room_from_spec(frame["spec"], self._events))
        self._broadcast({"op": "room_created", "room": frame["info"]})

    async def _room_deleted(self, frame: dict[str, Any]) -> None:
        room_id = frame["room"]
        self._registry.remove(room_id)
        notice = orjson.dumps({"op": "room_deleted", "room": room_id}).decode()
        for conn in self._hub.local_members(room_id):
            if conn.transport.kind != "websocket":  # (every WebSocket hears it below)
                conn.send_text(notice)
            await self._hub.detach(conn, room_id)
            await self._presence.leave(room_id, conn.client_id)
        self._broadcast({"op": "room_deleted", "room": room_id})

    def _presence_notice(self, frame: dict[str, Any]) -> None:
        notice = {"op": frame["op"], "room": frame["room"],
                  "user_id": frame["user_id"], "client_id": frame["client_id"]}
        text = orjson.dumps(notice).decode()
        for conn in self._hub.local_members(frame["room"]):
            if conn.client_id != frame["client_id"]:
                conn.send_text(text)

    def _node_lost(self, frame: dict[str, Any]) -> None:
        """A dead node's connections were removed from presence: notify members here."""
        for room_id, user_id, client_id in frame["left"]:
            room = self._registry.find(room_id)
            if room is not None and room.config.presence_events:
                self._presence_notice({"op": "presence_leave", "room": room_id,
                                       "user_id": user_id, "client_id": client_id})

    def _connections_lost(self, frame: dict[str, Any]) -> None:
        """This node removed a dead node's connections: their ``on_left`` (per room) and
        ``on_disconnected`` run here, in a task (slow hooks must not delay the heartbeat).
        The identity is the user id only: its ``meta`` died with the node."""
        hooks = self._hooks
        if hooks.on_left is None and hooks.on_disconnected is None:
            return
        task = asyncio.create_task(self._run_lost_hooks(frame["left"], frame["gone"]))
        self._hook_runs.add(task)
        task.add_done_callback(self._hook_runs.discard)

    async def _run_lost_hooks(self, left: list[list[str]], gone: list[list[str]]) -> None:
        for room_id, user_id, _client_id in left:
            await fire("on_left", self._hooks.on_left, Identity(user_id), room_id)
        for user_id, client_id in gone:
            await fire("on_disconnected", self._hooks.on_disconnected, Identity(user_id), client_id)

    def _connections_evicted(self, frame: dict[str, Any]) -> None:
        """Another node reaped these connections of this one (it seemed dead) and ran their
        leave hooks: close them, without those hooks, so they reconnect and join again."""
        for client_id in frame["clients"]:
            conn = self._hub.connections.get(client_id)
            if conn is not None:
                conn.reported_gone = True
                conn.close(CloseCode.TRY_AGAIN_LATER,
                           "this server was cut off from the cluster; reconnect")

    def _room_reset(self, frame: dict[str, Any]) -> None:
        """The broker lost the room's history: members reconnect, resync from a new epoch."""
        for conn in self._hub.local_members(frame["room"]):
            conn.close(CloseCode.SERVICE_RESTART, "the room's history was lost; reconnect")

    def _direct(self, frame: dict[str, Any]) -> None:
        text = orjson.dumps({"op": "direct", "event": frame["event"], "data": frame["data"],
                             "from": frame["from"], "ts": frame["ts"]}).decode()
        for conn in self._targets(frame):
            conn.send_text(text)

    def _disconnect_user(self, frame: dict[str, Any]) -> None:
        for conn in self._targets(frame):
            conn.close(CloseCode.DISCONNECTED_BY_APP, frame.get("reason") or "disconnected")

    def _targets(self, frame: dict[str, Any]) -> list[Any]:
        if frame.get("client_id"):
            conn = self._hub.connections.get(frame["client_id"])
            return [conn] if conn is not None else []
        return self._hub.local_clients_of(frame["user_id"])
