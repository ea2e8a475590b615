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


class Tallies:
    """Several groups' tallies read as one (the phases' view); each part keeps its own figures."""

    def __init__(self, *parts: Tally) -> None:
        self.parts = parts

    @property
    def delivered(self) -> int:
        return sum(part.delivered for part in self.parts)

    @property
    def latencies(self) -> list[int]:
        return [ns for part in self.parts for ns in part.latencies]

    @property
    def record_from(self) -> int | None:
        return self.parts[0].record_from

    @property
    def closes(self) -> Counter[int | None]:
        total: Counter[int | None] = Counter()
        for part in self.parts:
            total.update(part.closes)
        return total

    def reset(self, record_from: int | None = None) -> None:
        for part in self.parts:
            part.reset(record_from)
