"""The push dispatcher of one node: room events into the outbox, due rows out to devices.

The node that published an event (it took the seq) hands it to :meth:`PushDispatcher.enqueue`,
which never blocks the publish: a bounded queue (``queue_size``; a full queue drops and counts)
feeds a task that works out who would be notified (``recipients.devices``: nothing is queued
when every candidate is online) and writes one outbox row per event, due after the grace
period. A loop on every node claims due rows with a lease, checks again who is offline, and
sends each device one notification for all of its due rows of a room (several collapse into
"3 new messages in Design"), through :class:`~.delivery.Delivery` (rate, concurrency,
retries). A device done with a row is recorded, so a restart does not notify it twice; a row
is deleted once every device is done, or given back for later when a device is over its rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import replace
from itertools import groupby
from typing import Any

from ..brokers.base import Presence
from ..core.types import EventMessage
from .base import DEFAULT_TTL, Notification
from .delivery import Delivery, Done
from .outbox import MemoryOutbox, OutboxEntry, PushOutbox
from .preferences import MUTED
from .recipients import Room, RoomLookup, devices, pushes
from .registrations import Registration
from .service import PushService
from .templates import collapse, from_json, notification_for, to_json

logger = logging.getLogger("dialogue_fastapi")

_BATCH = 200  # events written to the outbox at once, rows claimed at once


class PushDispatcher:
    """Queues room events' notifications and sends them when due; ``push()`` sends at once."""

    def __init__(self, service: PushService, registry: RoomLookup, presence: Presence) -> None:
        config = service.config
        self._service, self._registry, self._presence = service, registry, presence
        self._config = config
        self.delivery = Delivery(service.senders, service.registrations,
                                 concurrency=config.concurrency, device_rate=config.device_rate,
                                 max_attempts=config.max_attempts)
        self.counters = self.delivery.counters
        self.outbox: PushOutbox = MemoryOutbox()
        self.poll = 0.1  # seconds between claims when nothing woke the loop
        self.lease_ms = int(config.claim_lease * 1000)  # a claimed row is free again after this
        self.owner = "n" + secrets.token_hex(6)
        self._grace_ms = int(config.grace_period * 1000)
        self._intake: asyncio.Queue[tuple[Room, EventMessage]] = asyncio.Queue(config.queue_size)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def use_outbox(self, outbox: PushOutbox, poll: float) -> None:
        """Keep rows in the store (the runtime's choice with a SQL store), polled every ``poll``."""
        self.outbox, self.poll = outbox, poll

    def start(self) -> None:
        self.delivery.use_registrations(self._service.registrations)
        self._tasks = [asyncio.create_task(self._take_in(), name="push-intake"),
                       asyncio.create_task(self._send_due(), name="push-dispatch")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def stats(self) -> dict[str, int]:
        """Counters and the queue depth (events waiting to be written, sends in flight)."""
        return {**self.counters.as_dict(), **self._service.preferences.stats(),
                "queue_depth": self._intake.qsize(),
                "in_flight": self.delivery.in_flight}

    # room events -------------------------------------------------------------------------
    def enqueue(self, room: Room, message: EventMessage) -> None:
        """A published event of this node (the publish path: never blocks, never raises)."""
        if not pushes(room):
            return
        try:
            self._intake.put_nowait((room, message))
        except asyncio.QueueFull:
            self.counters.dropped += 1

    async def _take_in(self) -> None:
        while True:
            batch = [await self._intake.get()]
            while len(batch) < _BATCH and not self._intake.empty():
                batch.append(self._intake.get_nowait())
            try:
                entries = [e for room, m in batch if (e := await self._entry(room, m)) is not None]
                await self.outbox.add(entries)
            except Exception:
                self.counters.dropped += len(batch)
                logger.exception("push: %d notifications could not be queued", len(batch))
            self._wake.set()

    async def _entry(self, room: Room, message: EventMessage) -> OutboxEntry | None:
        if not await devices(room, message.from_, self._service.registrations, self._presence,
                             self._config.when):
            self.counters.cancelled += 1
            return None
        definition = room.config.event(message.event)
        made = notification_for(message, room.config.name,
                                definition.push if definition is not None else None)
        if made is None:
            return None
        if made.ttl == DEFAULT_TTL:
            made = replace(made, ttl=self._config.ttl)
        return OutboxEntry(room.id, message.seq, message.event, message.from_, to_json(made),
                           message.ts + self._grace_ms)

    async def _send_due(self) -> None:
        while True:
            try:
                rows = await self.outbox.claim(self.owner, _ms(), self._grace_ms, self.lease_ms,
                                               _BATCH)
            except Exception:
                logger.exception("push: claiming due notifications failed")
                rows = []
            if rows:
                by_room = [list(g) for _, g in groupby(rows, key=lambda r: r.room)]
                await asyncio.gather(*(self._room_rows(group) for group in by_room))
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)

    async def _room_rows(self, rows: list[OutboxEntry]) -> None:
        renewing = asyncio.create_task(self._renew(rows), name="push-lease")
        try:
            await self._process(rows)
        except Exception:  # the lease runs out and a node tries again
            logger.exception("push: sending notifications of room %s failed", rows[0].room)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _renew(self, rows: list[OutboxEntry]) -> None:
        """Hold the claim while the rows are being sent (retries may outlast one lease): every
        third of the lease, the lease is extended on the rows this claim still holds."""
        ids = [r.id for r in rows]
        token = rows[0].claimed_by
        if token is None:
            return
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.outbox.renew(ids, token, _ms() + self.lease_ms)
            except Exception:
                logger.exception("push: renewing the claim of %d notifications failed", len(ids))

    async def _process(self, rows: list[OutboxEntry]) -> None:
        room = self._registry.find(rows[0].room)
        ids = [r.id for r in rows]
        if room is None or not pushes(room):
            await self.outbox.finish(ids)
            return
        done = await self.outbox.sent_to(ids)
        targets: dict[str, tuple[Registration, list[OutboxEntry]]] = {}
        chosen: dict[str, list[Registration]] = {}
        for row in rows:
            if row.sender not in chosen:  # offline again now, as things stand when due
                chosen[row.sender] = await devices(room, row.sender, self._service.registrations,
                                                   self._presence, self._config.when)
            wanted = [r for r in chosen[row.sender] if r.id not in done[row.id]]
            if not wanted:
                self.counters.cancelled += 1
            for registration in wanted:
                targets.setdefault(registration.id, (registration, []))[1].append(row)
        later: dict[int, float] = {}
        await asyncio.gather(*(self._to_device(room, reg, its, later)
                               for reg, its in targets.values()))
        finished = [i for i in ids if i not in later]
        if finished:
            await self.outbox.finish(finished)
        if later:
            await self.outbox.release(list(later), _ms() + int(min(later.values()) * 1000))

    async def _to_device(self, room: Room, registration: Registration, rows: list[OutboxEntry],
                         later: dict[int, float]) -> None:
        # quiet hours and muted rooms (push/preferences.py): done without a send, or held
        hold = await self._service.preferences.hold(registration.user_id, room.id)
        if hold == MUTED:
            await self.outbox.mark_sent([r.id for r in rows], registration.id, _ms())
            return
        if hold:
            for row in rows:
                later[row.id] = min(later.get(row.id, hold), hold)
            return
        # -------------------------------------------------------------------------------
        notification = collapse([from_json(r.notification) for r in rows], room.config.name)
        outcome = await self.delivery.send(registration, notification)
        if outcome is Done.LATER:
            wait = self.delivery.wait_for_rate(registration.id)
            for row in rows:  # the soonest any device of the row may receive (quiet hours: hours)
                later[row.id] = min(later.get(row.id, wait), wait)
            return
        self.counters.collapsed += len(rows) - 1
        await self.outbox.mark_sent([r.id for r in rows], registration.id, _ms())

    # direct ------------------------------------------------------------------------------
    async def push(self, user_id: str, notification: Notification) -> dict[str, Any]:
        """Send to every device of the user now (no grace period, no outbox): the outcome of
        each registration, by id."""
        found = await self._service.registrations.for_users([user_id])
        outcomes = await asyncio.gather(*(self.delivery.send(r, notification) for r in found))
        return {r.id: str(o) for r, o in zip(found, outcomes, strict=True)}


def _ms() -> int:
    return int(time.time() * 1000)
