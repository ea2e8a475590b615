"""The garbage collector settings of a node: thresholds, and freezes of what is alive.

A full collection scans every tracked object and stops the event loop meanwhile: about
200 objects a connection, so 1.5 s at 10,000 connections. ``gc.freeze()`` moves every
object alive at that moment out of the collector's scans; objects frozen and then freed
by reference counting are freed as usual, but a cycle among frozen objects is never
collected. What that costs is measured in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import gc
import logging

from ..core.background import BackgroundTask

logger = logging.getLogger("dialogue_fastapi")


class Collector:
    """Applies ``gc_thresholds`` and ``gc_freeze`` at start; ``gc_freeze_every`` seconds
    freezes again what has been alive since (connections that stay)."""

    def __init__(self, thresholds: tuple[int, int, int] | None, freeze: bool,
                 freeze_every: float | None) -> None:
        self._thresholds = thresholds
        self._freeze = freeze or freeze_every is not None
        self._every = freeze_every
        self._task = (BackgroundTask("dialogue-gc-freeze", self._freeze_forever)
                      if freeze_every is not None else None)

    def start(self) -> None:
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
        if self._freeze:
            gc.collect()
            gc.freeze()  # what startup left alive is no longer scanned by full collections
        if self._task is not None:
            self._task.start()

    async def stop(self) -> None:
        if self._task is not None:
            await self._task.stop()

    async def _freeze_forever(self) -> None:
        assert self._every is not None
        while True:
            await asyncio.sleep(self._every)
            gc.freeze()
            logger.debug("gc.freeze(): %d objects frozen", gc.get_freeze_count())
