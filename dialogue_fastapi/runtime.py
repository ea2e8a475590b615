"""The node's running parts, built from config in one place and started together."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .brokers import Broker, MemoryBroker, broker_from_config
from .brokers.base import OrderedSubmit, StoreBacked, StoredRooms
from .cluster.control import ControlHandler
from .core.config import DialogueConfig
from .core.errors import CloseCode
from .core.hooks import fire
from .core.metrics import NO_METRICS, Metrics
from .limits.http import HttpLimits
from .node.collector import Collector
from .node.connection import Connection, QueueLimits
from .node.exit_signal import forget_goodbye, say_goodbye_first
from .node.hub import Hub
from .publish.handlers import HandlerRegistry
from .publish.outbox import OutboxRelay
from .publish.publisher import Publisher
from .publish.submission import PublishTools
from .push.dispatch import PushDispatcher
from .push.service import PushService
from .rooms.admin import RoomAdmin
from .rooms.history import HistoryReader
from .rooms.instances import LiveInstances
from .rooms.membership import MembershipService
from .rooms.registry import RoomRegistry
from .rooms.retention import RetentionTask
from .rooms.state import RoomStates
from .stores import EventStore, PrunableStore, SingleWriterStore, store_from_config
from .stores.write_behind import WriteBehind

logger = logging.getLogger("dialogue_fastapi")


class Runtime:
    """Broker, store, hub and services of one node; owns their start and stop."""

    def __init__(self, config: DialogueConfig, metrics: Metrics = NO_METRICS) -> None:
        self.config = config
        self.metrics = metrics  # what every part reports through (the exporter, or nothing)
        self.hooks = config.hooks
        self.broker: Broker = broker_from_config(config.broker, hot_bytes=config.hot_history_bytes)
        self.store: EventStore | None = store_from_config(config.persistence)
        if isinstance(self.store, SingleWriterStore) and isinstance(self.broker, MemoryBroker):
            self.store.require_single_writer()  # no shared broker: one process per database
        self.writer: WriteBehind | None = None
        if self.store is not None:
            self.writer = WriteBehind(
                self.store, self._epoch_of, batch_size=config.write_batch_size,
                interval=config.write_interval, max_pending=config.write_max_pending,
                durable_timeout=config.durable_timeout,
            )
        self.registry = RoomRegistry(config.rooms)
        self.hub = Hub(self.broker)
        if self.writer is not None:
            self.writer.metrics = metrics
        self.handlers = HandlerRegistry()
        self.history = HistoryReader(self.broker, self.writer, config, config.max_recovery)
        self.publisher = Publisher(
            config, self.broker, self.writer, self.handlers, self.hooks, self.history
        )
        self.instances = LiveInstances(
            config.max_instances, self.hub, self.broker, self.registry, self.writer,
            self.publisher.limiter.check_new_instance,
        )
        self.publisher.family_used = self.instances.touch
        self.collector = Collector(config.gc_thresholds, config.gc_freeze, config.gc_freeze_every)
        self.publisher.metrics = metrics
        self.membership = MembershipService(
            config, self.broker, self.hub, self.registry, self.history, self.hooks,
            self.instances,
        )
        self.membership.metrics = metrics
        self.states = RoomStates(self.writer)
        self.admin = RoomAdmin(config, self.registry, self.broker, self.writer, self.hooks,
                               self.states)
        self.retention: RetentionTask | None = None
        if self.writer is not None and isinstance(self.store, PrunableStore):
            self.retention = RetentionTask(config, self.registry, self.writer, self.store)
        self.outbox: OutboxRelay | None = None
        if getattr(self.store, "supports_outbox", False):
            self.outbox = OutboxRelay(self.publisher, self.registry, self.store,
                                      interval=config.outbox_interval)
        self.control = ControlHandler(
            self.hub, self.registry, self.broker.presence, self.admin.events, self.hooks
        )
        limits = config.rate_limit
        self.http_limits = HttpLimits(limits) if limits is not None and limits.http else None
        self.queue_limits = QueueLimits(
            config.send_queue_max_messages, config.send_queue_max_bytes
        )
        self.push = PushService(config.push) if config.push is not None else None
        self.push_dispatch: PushDispatcher | None = None
        if self.push is not None:
            self.push_dispatch = PushDispatcher(self.push, self.registry, self.broker.presence)
            self.push_dispatch.delivery.metrics = metrics
            self.publisher.pushed = self.push_dispatch.enqueue
        self.sessions: set[asyncio.Task[None]] = set()
        self.on_stop: list[Callable[[], Awaitable[None]]] = []  # transports' own cleanup
        self.started = False
        self.stopping = False
        self._starts = 0

    def publish_tools(self) -> PublishTools:
        """FastAPI dependency: the limiter and global middleware of this node's publishes."""
        return self.publisher.tools

    # what the transports ask of the node (they reach no part of it directly) -------------
    @property
    def pipelined_publishes(self) -> bool:
        """Whether the broker takes publishes in order through one pipeline (a lane per
        connection keeps several in flight)."""
        return isinstance(self.broker, OrderedSubmit)

    def live_connections(self) -> list[Connection]:
        """Every connection of this node, any transport."""
        return list(self.hub.connections.values())

    async def readiness(self) -> tuple[dict[str, bool], dict[str, Any]]:
        """(checks, report) for ``/ready``: the checks are started, broker healthy and (with a
        store) its writer not failing; the report (dead letters, the broker's subscriber, the
        store's queue and lag) is informational and never fails readiness."""
        try:
            broker = bool(await self.broker.healthy())
        except Exception:
            broker = False
        checks = {"started": self.started, "broker": broker}
        report: dict[str, Any] = {"dead_letters": 0}
        stats = getattr(self.broker, "subscriber_stats", None)  # brokers with a subscriber (Redis)
        if stats is not None:
            report["subscriber"] = {"up": stats.up, "reconnects": stats.reconnects,
                                    "gap_repairs": stats.gap_repairs}
        writer = self.writer
        if writer is not None:
            checks["store"] = writer.healthy
            report["dead_letters"] = writer.dead_letters
            report["store"] = {"pending": writer.pending,
                               "lag_seconds": writer.lag(int(time.time() * 1000))}
        if self.push_dispatch is not None:
            report["push"] = self.push_dispatch.stats()
        return checks, report

    async def start(self) -> None:
        """Start once, however many apps include the router."""
        self._starts += 1
        if self.started:
            return
        self.stopping = False
        try:
            if self.store is not None:
                await self.store.start()  # the database must be reachable to start
            if self.writer is not None and isinstance(self.broker, StoreBacked):
                # not durable: acknowledged events reach the store within ~write_interval
                fence = 0.0 if self.config.durable else 2 * self.config.write_interval + 0.25
                self.broker.use_store(
                    StoredRooms(self.writer.position_of, self.writer.read_after, fence))
            await self.broker.start(self.hub.deliver, self.control)
            if self.writer is not None:
                await self._restore(self.writer)
        except BaseException:
            if isinstance(self.broker, StoreBacked):
                self.broker.use_store(None)
            self._starts -= 1
            raise
        if self.writer is not None:
            await self.writer.start()
        if self.retention is not None:
            self.retention.start()
        self.instances.start()
        self.collector.start()
        if self.outbox is not None:
            self.outbox.start()
        if self.push is not None:
            self._start_push(self.push)
        self.started = True
        say_goodbye_first(self, self.say_goodbye)  # before uvicorn's own 1012 on SIGTERM

    async def say_goodbye(self) -> None:
        """The server is about to stop: refuse new connections, close every one with
        ``disconnect`` + 1001 and wait until their sessions have ended."""
        self._close_all()
        if self.sessions:
            await asyncio.wait(list(self.sessions))

    def _start_push(self, push: PushService) -> None:
        """Registrations and the outbox in the store when it keeps them (SQL), a sender per
        provider, and the dispatcher."""
        stored = getattr(self.store, "push_registrations", None)
        if callable(stored):
            push.use_registrations(stored())
        preferences = getattr(self.store, "push_preferences", None)  # quiet hours, muted rooms
        if callable(preferences):
            push.use_preferences(preferences())
        push.build_senders()
        if self.push_dispatch is None:
            return
        if callable(stored):
            from .stores.sql_push_outbox import SqlPushOutbox  # SQLAlchemy: only with a SQL store

            store: Any = self.store
            self.push_dispatch.use_outbox(SqlPushOutbox(store.engine, store.tables), poll=0.5)
        self.push_dispatch.start()

    def _close_all(self) -> None:
        """Refuse new connections; ``disconnect`` + 1001 to every open one."""
        self.stopping = True
        for conn in list(self.hub.connections.values()):
            conn.close(CloseCode.GOING_AWAY, "server shutting down")

    async def _restore(self, writer: WriteBehind) -> None:
        """Continue every stored room's position; bring back runtime rooms."""
        positions = await writer.positions()
        for room_id, position in positions.items():
            room = self.registry.find(room_id)
            if room is not None and room.family is not None:
                continue  # an instance continues from the store on its first use
            await self.broker.restore(room_id, position)
            writer.forget(room_id)
        restored = await self.admin.restore()
        if positions or restored:
            logger.info("restored %d room positions and %d runtime rooms from the store",
                        len(positions), len(restored))

    async def _epoch_of(self, room_id: str) -> str:
        return (await self.broker.position(room_id)).epoch

    async def stop(self) -> None:
        """Graceful shutdown: 1001 to every client, sessions drained, backends closed."""
        self._starts = max(self._starts - 1, 0)
        if not self.started or self._starts:
            return
        forget_goodbye(self)
        self._close_all()
        for callback in self.on_stop:
            await callback()
        if self.sessions:
            _, pending = await asyncio.wait(
                list(self.sessions), timeout=self.config.shutdown_grace
            )
            for task in pending:
                task.cancel()
        await self.instances.stop()
        await self.collector.stop()
        for background in (self.outbox, self.retention):
            if background is not None:
                await background.stop()
        if self.push_dispatch is not None:
            await self.push_dispatch.stop()
        if self.push is not None:
            await self.push.close()
        await self.broker.stop()
        if self.writer is not None:
            await self.writer.stop(timeout=max(self.config.shutdown_grace, 5.0))
        if self.store is not None:
            await self.store.stop()
        self.started = False

    async def connected(self, conn: Connection) -> None:
        self.hub.add_connection(conn)
        try:
            await self.broker.presence.connect(conn.entry())
        except BaseException:
            self.hub.remove_connection(conn)
            raise
        self.metrics.connection_opened(conn.transport.kind)
        await fire("on_connected", self.hooks.on_connected, conn.identity, conn.client_id)

    async def disconnected(self, conn: Connection) -> None:
        """Leave every room (with hooks, unless another node ran them), forget the connection."""
        notify = not conn.reported_gone
        for room_id in list(conn.rooms):
            try:
                await self.membership.leave(conn, room_id, notify=notify)
            except Exception:
                logger.exception("leaving %s on disconnect failed", room_id,
                                 extra={"client_id": conn.client_id, "room": room_id})
        if self.hub.connections.get(conn.client_id) is conn:
            self.metrics.connection_closed(conn.transport.kind, conn.close_code, conn.overflow,
                                           conn.dropped, conn.delivered)
        self.hub.remove_connection(conn)
        try:
            await self.broker.presence.disconnect(conn.entry())
        except Exception:
            logger.exception("presence cleanup failed for %s", conn.client_id,
                             extra={"client_id": conn.client_id})
        if notify:
            await fire("on_disconnected", self.hooks.on_disconnected, conn.identity, conn.client_id)
