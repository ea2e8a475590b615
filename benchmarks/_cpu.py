"""Foreign CPU load: how busy each benchmark core was with anything but the benchmark.

On a shared machine another process (a test run, a build) lands on the pinned
cores and the figures measure it instead. /proc/stat says how busy each core
was; subtracting the server's and this process's own CPU time leaves the rest.
Kernel work done on behalf of the benchmark (loopback TCP, softirqs) is charged
to the process it ran for, so on a quiet machine the rest stays near zero.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_FIELDS = (3, 4)  # idle, iowait (after the "cpuN" label)


def busy_seconds() -> dict[int, float]:
    """Seconds each CPU spent busy since boot (all fields but idle and iowait; no guest)."""
    out: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        label, *fields = line.split()
        if label.startswith("cpu") and label != "cpu":
            ticks = [int(x) for x in fields[:8]]
            out[int(label[3:])] = (sum(ticks) - sum(ticks[i] for i in IDLE_FIELDS)) / CLK_TCK
    return out


@dataclass(frozen=True)
class Sample:
    wall: float
    busy: dict[int, float]
    own: dict[int, float]  # CPU -> seconds of the benchmark's processes pinned there


class ForeignLoad:
    """Snapshots of the cores around a phase; ``own`` says which CPU time is ours."""

    def __init__(self, own: dict[int, float]) -> None:
        self.start = Sample(time.perf_counter(), busy_seconds(), own)

    def cores(self, own: dict[int, float]) -> dict[int, float]:
        """Foreign load per pinned CPU, in cores (0.25 = a quarter of that core)."""
        end = Sample(time.perf_counter(), busy_seconds(), own)
        wall = max(end.wall - self.start.wall, 1e-9)
        return {
            cpu: max(0.0, (end.busy[cpu] - self.start.busy[cpu]) - (own[cpu] - self.start.own[cpu])) / wall
            for cpu in own
        }


async def wait_for_quiet(cpus: set[int], limit: float, max_wait: float, probe: float = 1.0) -> float:
    """Wait until ``cpus`` are less than ``limit`` busy (nothing of ours runs now); return the load seen."""
    deadline = time.monotonic() + max_wait
    while True:
        before = busy_seconds()
        await asyncio.sleep(probe)
        after = busy_seconds()
        load = max((after[c] - before[c]) / probe for c in cpus)
        if load < limit or time.monotonic() > deadline:
            return load
