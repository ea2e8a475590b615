"""Medians over repetitions, ratios dialogue/ceiling, and the targets."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# metric name -> (label, unit, format)
LABELS = {
    "deliv_per_s": ("delivered msgs/s", "{:,.0f}"),
    "cpu_us_per_msg": ("server CPU us/delivered msg", "{:.2f}"),
    "server_util": ("server CPU utilisation (tput phase)", "{:.0%}"),
    "client_util": ("load-gen CPU utilisation (tput phase)", "{:.0%}"),
    "rate": ("latency: offered publishes/s", "{:,.0f}"),
    "p50_ms": ("latency p50 ms", "{:.2f}"),
    "p99_ms": ("latency p99 ms", "{:.2f}"),
    "lat_server_util": ("server CPU utilisation (latency phase)", "{:.0%}"),
    "lat_client_util": ("load-gen CPU utilisation (latency phase)", "{:.0%}"),
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


def ratio(med: dict[str, dict[str, float]], metric: str) -> float | None:
    base, dial = med.get("baseline", {}).get(metric), med.get("dialogue", {}).get(metric)
    if base is None or dial is None or base == 0:
        return None
    return dial / base


def table(med: dict[str, dict[str, float]]) -> str:
    metrics = sorted({k for m in med.values() for k in m}, key=_sort_key)
    rows = [("metric", "ceiling", "dialogue", "dialogue/ceiling")]
    for metric in metrics:
        r = ratio(med, metric)
        rows.append(
            (
                _label(metric),
                _fmt(metric, med.get("baseline", {}).get(metric)),
                _fmt(metric, med.get("dialogue", {}).get(metric)),
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
