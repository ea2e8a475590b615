"""Medians over repetitions, ratios dialogue/ceiling (or any two kinds), and the targets."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# metric name -> (label, format); the table lists a size's metrics in this order.
# The indented ones are cluster.py's: the same figure for the subscribers on the
# publisher's node and on the other node, and the CPU of each process.
LABELS = {
    "deliv_per_s": ("delivered msgs/s", "{:,.0f}"),
    "same_deliv_per_s": ("  publisher's node: delivered msgs/s", "{:,.0f}"),
    "other_deliv_per_s": ("  other node: delivered msgs/s", "{:,.0f}"),
    "cpu_us_per_msg": ("server CPU us/delivered msg", "{:.2f}"),
    "server_util": ("server CPU utilisation (tput phase)", "{:.0%}"),
    "node_a_util": ("  publisher's node", "{:.0%}"),
    "node_b_util": ("  other node", "{:.0%}"),
    "redis_util": ("  redis-server", "{:.0%}"),
    "client_util": ("load-gen CPU utilisation (tput phase)", "{:.0%}"),
    "msgs_per_write": ("SSE messages per write (tput phase)", "{:.1f}"),  # sse.py
    "rate": ("latency: offered publishes/s", "{:,.0f}"),
    "p50_ms": ("latency p50 ms", "{:.2f}"),
    "p99_ms": ("latency p99 ms", "{:.2f}"),
    "same_p50_ms": ("  publisher's node: p50 ms", "{:.2f}"),
    "same_p99_ms": ("  publisher's node: p99 ms", "{:.2f}"),
    "other_p50_ms": ("  other node: p50 ms", "{:.2f}"),
    "other_p99_ms": ("  other node: p99 ms", "{:.2f}"),
    "lat_server_util": ("server CPU utilisation (latency phase)", "{:.0%}"),
    "lat_client_util": ("load-gen CPU utilisation (latency phase)", "{:.0%}"),
    "lat_msgs_per_write": ("SSE messages per write (latency phase)", "{:.2f}"),  # sse.py
    "foreign_load": ("foreign CPU load (max, cores)", "{:.2f}"),
    "rss_kib_per_conn": ("RSS KiB per idle connection", "{:.1f}"),
}


@dataclass(frozen=True)
class Target:
    metric: str
    op: str  # ">=" or "<="
    ratio: float


TARGETS = [
    Target("deliv_per_s@1000", ">=", 0.7),
    Target("p99_ms@1000", "<=", 2.0),
    Target("p99_ms@100", "<=", 2.0),
    Target("rss_kib_per_conn", "<=", 1.5),
]


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for run in runs for k in run})
    return {k: statistics.median(run[k] for run in runs if k in run) for k in keys}


def _fmt(metric: str, value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return LABELS[metric.split("@")[0]][1].format(value)


def _label(metric: str) -> str:
    base, _, n = metric.partition("@")
    return f"{LABELS[base][0]}" + (f" (N={n})" if n else "")


def ratio(
    med: dict[str, dict[str, float]], metric: str, num: str = "dialogue", den: str = "baseline"
) -> float | None:
    base, dial = med.get(den, {}).get(metric), med.get(num, {}).get(metric)
    if base is None or dial is None or base == 0:
        return None
    return dial / base


def table(
    med: dict[str, dict[str, float]],
    columns: tuple[tuple[str, str], tuple[str, str]] = (("baseline", "ceiling"), ("dialogue", "dialogue")),
) -> str:
    """Metric, the two ``(kind, heading)`` columns, and the ratio second/first."""
    (den, den_head), (num, num_head) = columns
    metrics = sorted({k for m in med.values() for k in m}, key=_sort_key)
    rows = [("metric", den_head, num_head, f"{num_head}/{den_head}")]
    for metric in metrics:
        r = ratio(med, metric, num, den)
        rows.append(
            (
                _label(metric),
                _fmt(metric, med.get(den, {}).get(metric)),
                _fmt(metric, med.get(num, {}).get(metric)),
                "n/a" if r is None else f"{r:.2f}x",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _sort_key(metric: str) -> tuple[int, int]:
    base, _, n = metric.partition("@")
    return (int(n) if n else 1 << 30, list(LABELS).index(base))


def targets(med: dict[str, dict[str, float]]) -> str:
    lines = ["targets (dialogue/ceiling, medians):"]
    for t in TARGETS:
        r = ratio(med, t.metric)
        if r is None:
            verdict = "not measured"
        else:
            ok = r >= t.ratio if t.op == ">=" else r <= t.ratio
            verdict = f"{r:.2f}x -> {'PASS' if ok else 'FAIL'}"
        lines.append(f"  {_label(t.metric)} {t.op} {t.ratio}x ceiling: {verdict}")
    return "\n".join(lines)
