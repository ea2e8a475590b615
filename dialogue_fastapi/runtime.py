"""The node's running parts, built from config in one place and started together."""

from __future__ import annotations

import asyncio
import logging

from .brokers import Broker, broker_from_config
from .config import DialogueConfig
from .connection import Connection, QueueLimits
from .control import ControlHandler
from .errors import CloseCode
from .handlers import HandlerRegistry
from .history import HistoryReader
from .hooks import fire
from .hub import Hub
from .membership import MembershipService
from .publisher import Publisher
from .room_admin import RoomAdmin
from .rooms import RoomRegistry
from .stores import EventStore, store_from_config

logger = logging.getLogger("dialogue_fastapi")


class Runtime:
    """Broker, store, hub and services of one node; owns their start and stop."""

    def __init__(self, config: DialogueConfig) -> None:
        self.config = config
        self.hooks = config.hooks
        self.broker: Broker = broker_from_config(config.broker)
        self.store: EventStore | None = store_from_config(config.persistence)
        self.registry = RoomRegistry(config.rooms)
        self.hub = Hub(self.broker)
        self.handlers = HandlerRegistry()
        self.history = HistoryReader(self.broker, self.store, config, config.max_recovery)
        self.publisher = Publisher(
            config, self.broker, self.store, self.handlers, self.hooks, self.history
        )
        self.membership = MembershipService(
            config, self.broker, self.hub, self.registry, self.history, self.hooks
        )
        self.admin = RoomAdmin(config, self.registry, self.broker, self.store, self.hooks)
        self.control = ControlHandler(
            self.hub, self.registry, self.broker.presence, self.admin.events
        )
        self.queue_limits = QueueLimits(
            config.send_queue_max_messages, config.send_queue_max_bytes
        )
        self.sessions: set[asyncio.Task[None]] = set()
        self.started = False
        self.stopping = False
        self._starts = 0

    async def start(self) -> None:
        """Start once, however many apps include the router."""
        self._starts += 1
        if self.started:
            return
        self.stopping = False
        if self.store is not None:
            await self.store.start()
        await self.broker.start(self.hub.deliver, self.control)
        self.started = True

    async def stop(self) -> None:
        """Graceful shutdown: 1001 to every client, sessions drained, backends closed."""
        self._starts = max(self._starts - 1, 0)
        if not self.started or self._starts:
            return
        self.stopping = True
        for conn in list(self.hub.connections.values()):
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
        if self.sessions:
            _, pending = await asyncio.wait(
                list(self.sessions), timeout=self.config.shutdown_grace
            )
            for task in pending:
                task.cancel()
        await self.broker.stop()
        if self.store is not None:
            await self.store.stop()
        self.started = False

    async def connected(self, conn: Connection) -> None:
        self.hub.add_connection(conn)
        await self.broker.presence.connect(conn.entry())
        await fire("on_connected", self.hooks.on_connected, conn.identity, conn.client_id)

    async def disconnected(self, conn: Connection) -> None:
        """Leave every room (with hooks), forget the connection."""
        for room_id in list(conn.rooms):
            try:
                await self.membership.leave(conn, room_id)
            except Exception:
                logger.exception("leaving %s on disconnect failed", room_id)
        self.hub.remove_connection(conn)
        try:
            await self.broker.presence.disconnect(conn.entry())
        except Exception:
            logger.exception("presence cleanup failed for %s", conn.client_id)
        await fire("on_disconnected", self.hooks.on_disconnected, conn.identity, conn.client_id)
