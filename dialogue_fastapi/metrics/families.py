"""Every metric the exporter defines, with its labels (docs/metrics.md explains each).

Gauges carry a multiprocess mode for prometheus-client's multiprocess mode:
``livesum`` adds the live workers' values, ``livemax``/``livemin`` take the
extreme; a worker that died (even by SIGKILL) no longer counts once its files
are marked dead. Counters and histograms of dead workers keep counting, so
totals never go backwards.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

COMMAND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
BATCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Families:
    """The metric objects of one exporter (``registry`` None: multiprocess files only)."""

    def __init__(self, registry: CollectorRegistry | None, latency_buckets: Sequence[float]) -> None:
        r = registry

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(name, doc, labels, registry=r)

        def gauge(name: str, doc: str, mode: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=r, multiprocess_mode=mode)  # type: ignore[arg-type]

        def histogram(name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> Histogram:
            return Histogram(name, doc, labels, registry=r, buckets=buckets)

        # the roadmap's five
        self.connections = counter("dialogue_connections_total", "Connections accepted, any transport")
        self.active = gauge("dialogue_connections_active", "Open connections", "livesum")
        self.events = counter("dialogue_events_total", "Events published (took a seq) on this node",
                              ("room", "event"))
        self.latency = histogram(
            "dialogue_events_latency_seconds",
            "Publish latency: pipeline start to the broker's acknowledgement", ("room", "event"),
            latency_buckets)
        self.rooms_size = gauge("dialogue_rooms_size", "Members on this node by room label", "livesum",
                                ("room",))
        # connections and delivery
        self.accepted = counter("dialogue_connections_accepted_total", "Connections accepted",
                                ("transport",))
        self.closed = counter("dialogue_connections_closed_total",
                              "Connections ended, by the server's close code ('client': the peer left)",
                              ("transport", "code"))
        self.delivered = counter("dialogue_messages_delivered_total",
                                 "Room events queued to connections", ("transport",))
        self.dropped = counter("dialogue_messages_dropped_total",
                               "Messages discarded by a send-queue overflow", ("transport", "reason"))
        self.slow = counter("dialogue_slow_consumers_total",
                            "Connections closed with 4009 (send queue overflowed)", ("transport", "reason"))
        # commands, publishes, recoveries
        self.commands = counter("dialogue_commands_total", "WebSocket commands answered, by outcome",
                                ("op", "code"))
        self.command_seconds = histogram("dialogue_command_duration_seconds",
                                         "WebSocket command duration", ("op",), COMMAND_BUCKETS)
        self.refusals = counter("dialogue_publish_refusals_total",
                                "Publishes refused before taking a seq (rate limit, middleware, rules)",
                                ("code",))
        self.connection_refusals = counter(
            "dialogue_connection_refusals_total",
            "Connections and REST requests refused before a session (IP limits, authentication, Origin)",
            ("transport", "code"))
        self.recoveries = counter("dialogue_recoveries_total", "Joins with a resume position",
                                  ("transport", "outcome"))
        self.recovered = counter("dialogue_recovered_events_total", "Events replayed by recoveries",
                                 ("transport",))
        self.broker_seconds = histogram("dialogue_broker_publish_duration_seconds",
                                        "Broker publish (seq assigned) duration", (), latency_buckets)


class BrokerFamilies:
    """A broker with a subscriber (Redis): its state, sampled."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.up = Gauge("dialogue_broker_subscriber_up",
                        "1 if the broker subscriber of every live worker listens", registry=registry,
                        multiprocess_mode="livemin")
        self.reconnects = Counter("dialogue_broker_subscriber_reconnects_total",
                                  "Times the subscriber reconnected", registry=registry)
        self.repairs = Counter("dialogue_broker_gap_repairs_total",
                               "Gaps in a room's seq repaired from history", registry=registry)
        self.repaired = Counter("dialogue_broker_repaired_events_total",
                                "Events delivered by gap repairs", registry=registry)


class StoreFamilies:
    """The write-behind queue in front of the store."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.depth = Gauge("dialogue_store_queue_depth", "Events waiting for the store",
                           registry=registry, multiprocess_mode="livesum")
        self.lag = Gauge("dialogue_store_lag_seconds", "Age of the oldest event waiting for the store",
                         registry=registry, multiprocess_mode="livemax")
        self.written = Counter("dialogue_store_written_total", "Events written to the store",
                               registry=registry)
        self.batch = Histogram("dialogue_store_batch_duration_seconds", "Write-behind batch duration",
                               registry=registry, buckets=BATCH_BUCKETS)
        self.dead_letters = Gauge("dialogue_store_dead_letters",
                                  "Events the store refused as data, kept aside", registry=registry,
                                  multiprocess_mode="livemax")


class PushFamilies:
    """Push notifications (with ``push=``): sends by provider and outcome, the dispatcher's queue."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.sends = Counter("dialogue_push_sends_total",
                             "Device sends that ended, by provider and outcome", ("provider", "outcome"),
                             registry=registry)
        self.retries = Counter("dialogue_push_retries_total",
                               "Send attempts answered 429, 5xx or a network error and tried again",
                               ("provider",), registry=registry)
        self.notifications = Counter(
            "dialogue_push_notifications_total",
            "Notifications not sent when due: dropped (queue full), cancelled (all online), "
            "collapsed into another, muted, held for quiet hours", ("outcome",), registry=registry)
        self.queue = Gauge("dialogue_push_queue_depth", "Events waiting for the push dispatcher",
                           registry=registry, multiprocess_mode="livesum")
        self.in_flight = Gauge("dialogue_push_in_flight", "Sends waiting for a push service",
                               registry=registry, multiprocess_mode="livesum")
