"""What the exporter reads of a running node at scrape time (no prometheus-client here).

These figures are already counted by the node for its own work (the hub's
connections and rooms, each connection's delivered events, the write-behind
queue, the Redis subscriber), so reading them when Prometheus asks costs the
hot path nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..core.metrics import LabelledRoom, SubscriberStats
from ..runtime import Runtime


@dataclass(frozen=True, slots=True)
class StoreReading:
    depth: int
    lag: float
    written: int
    dead_letters: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One node's state at one moment."""

    connections: int
    rooms: dict[str, int]  # room label -> members on this node
    delivered: dict[str, int] = field(default_factory=dict)  # transport -> events ever queued
    store: StoreReading | None = None
    subscriber: SubscriberStats | None = None
    push: dict[str, int] | None = None  # the push dispatcher's stats()


def read(rt: Runtime, label: Callable[[LabelledRoom], str], retired: Mapping[str, int]) -> Snapshot:
    """The node's figures now: ``label`` names a room; ``retired``: deliveries of ended connections."""
    hub, registry = rt.hub, rt.registry
    rooms: dict[str, int] = {}
    for room_id in hub.room_ids():
        room = registry.find(room_id)
        name = label(room) if room is not None else label(_Gone(room_id))
        rooms[name] = rooms.get(name, 0) + len(hub.local_members(room_id))
    delivered = dict(retired)
    for conn in hub.connections.values():
        kind = conn.transport.kind
        delivered[kind] = delivered.get(kind, 0) + conn.delivered
    writer = rt.writer
    store = None
    if writer is not None:
        store = StoreReading(writer.pending, writer.lag(int(time.time() * 1000)), writer.written,
                             writer.dead_letters)
    stats = getattr(rt.broker, "subscriber_stats", None)
    subscriber = stats if isinstance(stats, SubscriberStats) else None
    push = rt.push_dispatch.stats() if rt.push_dispatch is not None else None
    return Snapshot(len(hub.connections), rooms, delivered, store, subscriber, push)


@dataclass(frozen=True, slots=True)
class _Gone:
    """A room the hub still lists but the registry no longer knows (being deleted)."""

    id: str
    runtime: bool = True
    family: str | None = None
