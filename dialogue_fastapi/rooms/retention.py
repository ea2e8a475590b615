"""Retention: a background task deletes stored events beyond ``Retention`` limits.

Each room uses its own ``RoomConfig(retention=...)`` or the global
``retention=``. Work is bounded: one statement deletes at most
``retention_batch`` rows (a short transaction; on PostgreSQL only those rows
are locked), and one pass runs at most ``MAX_STATEMENTS`` statements. A pass
that used its whole budget is followed by the next one after a second
instead of ``retention_interval``, so a backlog drains without long locks.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..core.background import BackgroundTask
from ..core.config import DialogueConfig, Retention
from ..stores.base import EventStore, PrunableStore
from .registry import RoomRegistry

logger = logging.getLogger("dialogue_fastapi")
MAX_STATEMENTS = 100


class RetentionTask:
    """Prunes the store periodically; :meth:`run_pass` does one bounded pass."""

    def __init__(
        self, config: DialogueConfig, registry: RoomRegistry, store: EventStore,
        prunable: PrunableStore,
    ) -> None:
        self._config = config
        self._registry = registry
        self._store = store  # for positions(): the rooms the store knows
        self._prunable = prunable
        self._background = BackgroundTask("dialogue-retention", self._run)
        self.deleted = 0

    def retention_for(self, room_id: str) -> Retention | None:
        room = self._registry.find(room_id)
        if room is not None and room.config.retention is not None:
            return room.config.retention
        return self._config.retention

    def enabled(self) -> bool:
        return self._config.retention is not None or any(
            r.config.retention is not None
            for r in [*self._registry.all(), *self._registry.families()]
        )

    async def run_pass(self, now_ms: int | None = None) -> tuple[int, bool]:
        """One pass; returns (rows deleted, whether the budget ran out)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        budget = MAX_STATEMENTS
        deleted = 0
        batch = self._config.retention_batch
        for room_id in sorted(await self._store.positions()):
            retention = self.retention_for(room_id)
            if retention is None or (retention.max_events is None and retention.max_age is None):
                continue
            older = None if retention.max_age is None else now - int(retention.max_age * 1000)
            while budget > 0:
                budget -= 1
                gone = await self._prunable.prune(room_id, keep_last=retention.max_events,
                                                  older_than=older, limit=batch)
                deleted += gone
                await asyncio.sleep(0)
                if gone < batch:
                    break
        deleted += await self._prune_rejections(now, budget)
        self.deleted += deleted
        return deleted, budget <= 0

    async def _prune_rejections(self, now: int, budget: int) -> int:
        age = self._config.retention.max_age if self._config.retention is not None else None
        if age is None:
            return 0
        deleted, batch = 0, self._config.retention_batch
        for _ in range(max(budget, 1)):
            gone = await self._prunable.prune_rejections(now - int(age * 1000), batch)
            deleted += gone
            if gone < batch:
                break
        return deleted

    async def _run(self) -> None:
        exhausted = False
        while True:
            await asyncio.sleep(1.0 if exhausted else self._config.retention_interval)
            exhausted = False
            if self.enabled():
                try:
                    deleted, exhausted = await self.run_pass()
                    if deleted:
                        logger.info("retention deleted %d stored events", deleted)
                except Exception as exc:
                    logger.warning("a retention pass failed (retried later): %s", exc)

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()
