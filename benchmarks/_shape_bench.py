"""What the servers of ``shape.py`` share: GC pauses from ``gc.callbacks``, the GC settings the
run asks for (environment), and the ``/_bench`` routes' bodies.

Every server imports this module at startup, so its ``GcWatch`` sees each collection of the
process: the pause (``perf_counter_ns`` from the callback's ``start`` to its ``stop``) and the
generation. ``GET /_bench/gc`` returns the figures since the last ``POST /_bench/gc/reset``.

Environment (``shape.py --gc-variants`` sets them for the dialogue server):

- ``SHAPE_GC_FREEZE=1``: ``gc.freeze()`` once the app has started;
- ``SHAPE_GC_THRESHOLDS=a,b,c``: ``gc.set_threshold(a, b, c)``.
"""

from __future__ import annotations

import gc
import os
import time
from collections import Counter
from typing import Any


class GcWatch:
    """Collections and their pauses, per generation, since ``reset``."""

    def __init__(self) -> None:
        self._t0 = self._c0 = 0
        self.reset()
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        self.counts = [0, 0, 0]
        self.max_ns = [0, 0, 0]
        self.total_ns = [0, 0, 0]
        self.max_cpu_ns = [0, 0, 0]
        self.total_cpu_ns = [0, 0, 0]
        self.collected = 0
        self.since = time.monotonic()

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0, self._c0 = time.perf_counter_ns(), time.thread_time_ns()
            return
        pause = time.perf_counter_ns() - self._t0
        cpu = time.thread_time_ns() - self._c0
        gen = int(info.get("generation", 0))
        self.total_cpu_ns[gen] += cpu
        self.max_cpu_ns[gen] = max(self.max_cpu_ns[gen], cpu)
        self.counts[gen] += 1
        self.total_ns[gen] += pause
        self.max_ns[gen] = max(self.max_ns[gen], pause)
        self.collected += int(info.get("collected", 0))

    def snapshot(self, applied_by: str) -> dict[str, Any]:
        return {
            "seconds": time.monotonic() - self.since,
            "collections": self.counts,
            "max_pause_ms": max(self.max_ns) / 1e6,
            "max_pause_ms_by_gen": [ns / 1e6 for ns in self.max_ns],
            "total_pause_ms": sum(self.total_ns) / 1e6,
            "total_pause_ms_by_gen": [ns / 1e6 for ns in self.total_ns],
            "max_pause_cpu_ms": max(self.max_cpu_ns) / 1e6,
            "max_pause_cpu_ms_by_gen": [ns / 1e6 for ns in self.max_cpu_ns],
            "total_pause_cpu_ms": sum(self.total_cpu_ns) / 1e6,
            "gen2": self.counts[2],
            "collected": self.collected,
            "threshold": list(gc.get_threshold()),
            "freeze_count": gc.get_freeze_count(),
            "tracked_objects": len(gc.get_objects()) if os.environ.get("SHAPE_GC_COUNT_OBJECTS") else None,
            "applied_by": applied_by,
        }


def objects_report(top: int = 12) -> dict[str, Any]:
    """``GET /_bench/objects`` (a diagnostic, slow with millions of objects): objects the
    collector tracks per generation, the commonest types in each, and one timed collection
    of each young generation."""
    out: dict[str, Any] = {"count": list(gc.get_count()), "threshold": list(gc.get_threshold()),
                           "frozen": gc.get_freeze_count()}
    for gen in range(3):
        objs = gc.get_objects(gen)
        types = Counter(type(o).__qualname__ for o in objs)
        out[f"gen{gen}"] = {"objects": len(objs), "top": types.most_common(top)}
        del objs
    for gen in (0, 1):
        t0 = time.perf_counter_ns()
        gc.collect(gen)
        out[f"collect{gen}_ms"] = (time.perf_counter_ns() - t0) / 1e6
    return out


def gc_settings() -> tuple[bool, tuple[int, int, int] | None]:
    """``SHAPE_GC_FREEZE`` and ``SHAPE_GC_THRESHOLDS`` from the environment."""
    freeze = os.environ.get("SHAPE_GC_FREEZE", "") not in ("", "0")
    text = os.environ.get("SHAPE_GC_THRESHOLDS", "").strip()
    thresholds: tuple[int, int, int] | None = None
    if text:
        a, b, c = (int(x) for x in text.split(","))
        thresholds = (a, b, c)
    return freeze, thresholds


def trigger_events(body: Any) -> list[tuple[str, Any]]:
    """``POST /_bench/trigger``'s body, ``{"events": [{"room": ..., "data": ...}, ...]}``."""
    return [(str(e["room"]), e["data"]) for e in body["events"]]


watch = GcWatch()
