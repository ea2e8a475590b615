"""What a group of subscribers saw, shared by both receive paths."""

from __future__ import annotations

from collections import Counter


class Tally:
    """What the subscribers of one group saw; one event loop, so plain counters."""

    __slots__ = ("closes", "delivered", "latencies", "record_from")

    def __init__(self) -> None:
        self.delivered = 0
        self.latencies: list[int] = []  # ns, publish (time.time_ns in data) -> receipt
        self.record_from: int | None = None  # record latencies of events with data.i >= this
        self.closes: Counter[int | None] = Counter()

    def reset(self, record_from: int | None = None) -> None:
        self.delivered, self.latencies, self.record_from = 0, [], record_from
