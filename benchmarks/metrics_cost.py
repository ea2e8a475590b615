"""What metrics cost one published event, measured directly (no network, no noise of a shared CPU).

    python benchmarks/metrics_cost.py [--fanout /tmp/fanout.json] [--n 200000]

With ``metrics=True`` a WebSocket publish makes exactly two reports: ``command("publish",
"ok", seconds)`` (the session) and ``published(room, event, seconds, broker_seconds)``
(the publisher), plus three ``time.perf_counter()`` calls; nothing is reported per
delivery (deliveries are read at scrape time). This script times those calls on the
real exporter (prometheus-client) and on the default ``NoMetrics``, best of 5 runs of
``--n`` calls, and relates the difference to what a publish costs the server:
``--fanout`` reads a ``fanout.py --json`` result and uses its median server CPU per
delivered message at N=100 and N=1000 (a publish to N subscribers costs N times that).
Without it, 15 us per delivered message is assumed (the order measured on this machine).
Indirect costs (caches, the collector's work on the exporter's objects) are not in it:
``fanout.py --metrics`` measures the whole, with the noise of the machine it runs on.
"""

from __future__ import annotations

import argparse
import json
import time
import timeit
from pathlib import Path
from typing import Any

from dialogue_fastapi import Dialogue, RoomConfig
from dialogue_fastapi.core.metrics import NO_METRICS, Metrics


def per_event(metrics: Metrics, room: Any, n: int) -> float:
    """Seconds one published event spends in metrics (the two reports and the timers)."""

    def one() -> None:
        started = time.perf_counter()
        metrics.command("publish", "ok", time.perf_counter() - started)
        metrics.published(room, "message", time.perf_counter() - started, 0.0005)

    return min(timeit.repeat(one, number=n, repeat=5)) / n


def cpu_per_delivery(path: Path | None) -> dict[int, float]:
    if path is None:
        return {100: 15.0, 1000: 15.0}
    found: dict[int, float] = {}
    medians = json.loads(path.read_text()).get("medians", {})
    for kind, rows in medians.items():
        if kind != "dialogue":
            continue
        for key, value in rows.items():
            if key.startswith("cpu_us_per_msg@"):
                found[int(key.split("@")[1])] = float(value)
    return found or {100: 15.0, 1000: 15.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="calls per timing run")
    parser.add_argument("--fanout", type=Path, help="a fanout.py --json result (median CPU/msg)")
    args = parser.parse_args()
    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, metrics=True, allow_anonymous=True)
    room = dialogue.runtime.registry.get("chat")
    on = per_event(dialogue.runtime.metrics, room, args.n) * 1e6
    off = per_event(NO_METRICS, room, args.n) * 1e6
    print(f"per published event: metrics on {on:.2f} us, off {off:.2f} us, cost {on - off:.2f} us")
    for n, us in sorted(cpu_per_delivery(args.fanout).items()):
        publish = n * us
        share = (on - off) / publish
        print(f"N={n}: a publish costs the server ~{publish:,.0f} us ({us:.2f} us x {n}); metrics add "
              f"{share:.2%} directly (throughput {1 / (1 + share):.4f}x of off, before indirect effects)")


if __name__ == "__main__":
    main()
