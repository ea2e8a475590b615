"""Medians over repetitions, ratios dialogue/ceiling (or any two kinds), the targets, and the
comparison of this tree's library with another version (``--against``)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# metric name -> (label, format); the table lists a size's metrics in this order.
# The indented ones are cluster.py's: the same figure for the subscribers on the
# publisher's node and on the other node, and the CPU of each process.
LABELS = {
    "subscriber_nodes": ("app nodes subscribed per room", "{:.1f}"),  # cluster.py
    "deliv_per_s": ("delivered msgs/s", "{:,.0f}"),
    "same_deliv_per_s": ("  publisher's node: delivered msgs/s", "{:,.0f}"),
    "other_deliv_per_s": ("  other node: delivered msgs/s", "{:,.0f}"),
    "cpu_us_per_msg": ("server CPU us/delivered msg", "{:.2f}"),
    "server_util": ("server CPU utilisation (tput phase)", "{:.0%}"),
    "node_a_util": ("  publisher's node", "{:.0%}"),
    "node_b_util": ("  other node", "{:.0%}"),
    "redis_util": ("  redis-server", "{:.0%}"),
    "redis_shard_util": ("  redis-server per shard", "{:.0%}"),  # a list: one per master
    "redis_replica_util": ("  redis replicas (all)", "{:.0%}"),
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
    "lat_node_a_util": ("  publisher's node", "{:.0%}"),
    "lat_node_b_util": ("  other node", "{:.0%}"),
    "lat_redis_util": ("  redis-server", "{:.0%}"),
    "lat_redis_shard_util": ("  redis-server per shard", "{:.0%}"),
    "lat_redis_replica_util": ("  redis replicas (all)", "{:.0%}"),
    "lat_client_util": ("load-gen CPU utilisation (latency phase)", "{:.0%}"),
    "lat_msgs_per_write": ("SSE messages per write (latency phase)", "{:.2f}"),  # sse.py
    "foreign_load": ("foreign CPU load (max, cores)", "{:.2f}"),
    "rss_kib_per_conn": ("RSS KiB per idle connection", "{:.1f}"),
    "publishes_per_s": ("acked publishes/s", "{:,.0f}"),  # pipeline.py
    "cpu_us_per_publish": ("server CPU us/publish", "{:.2f}"),  # pipeline.py
}
# --against: the figures judged, and which way is better ("<=": lower)
BETTER = {
    "deliv_per_s": ">=",
    "publishes_per_s": ">=",
    "cpu_us_per_msg": "<=",
    "cpu_us_per_publish": "<=",
    "p50_ms": "<=",
    "p99_ms": "<=",
    "rss_kib_per_conn": "<=",
}
TOLERANCE = 0.05  # --against: a judged figure may be at most 5% worse than the other version's


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


def _fmt(metric: str, value: float | list[float] | None) -> str:
    if isinstance(value, list):  # one figure per part (cluster.py's shards)
        return " / ".join(_fmt(metric, v) for v in value)
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
    if not isinstance(base, int | float) or not isinstance(dial, int | float) or abs(base) < 1e-6:
        return None  # not measured on both sides, not one figure, or (next to) nothing to divide
    return dial / base


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as a table: the first column left-aligned, the others right-aligned,
    a rule under the header row."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _rows(med: dict[str, dict[str, float]], metrics: Iterable[str], den: str, num: str,
          prefix: str = "", digits: int = 2) -> list[tuple[str, str, str, str]]:
    """Per metric: its label, the ``den`` and ``num`` medians, and the ratio num/den."""
    out = []
    for metric in metrics:
        r = ratio(med, metric, num, den)
        out.append((prefix + _label(metric), _fmt(metric, med.get(den, {}).get(metric)),
                    _fmt(metric, med.get(num, {}).get(metric)), "n/a" if r is None else f"{r:.{digits}f}x"))
    return out


def _all_metrics(med: dict[str, dict[str, float]]) -> list[str]:
    return sorted({k for m in med.values() for k in m}, key=_sort_key)


def table(
    med: dict[str, dict[str, float]],
    columns: tuple[tuple[str, str], tuple[str, str]] = (("baseline", "ceiling"), ("dialogue", "dialogue")),
) -> str:
    """Metric, the two ``(kind, heading)`` columns, and the ratio second/first."""
    (den, den_head), (num, num_head) = columns
    head = ("metric", den_head, num_head, f"{num_head}/{den_head}")
    return text_table([head, *_rows(med, _all_metrics(med), den, num)])


def wide_table(
    med: dict[str, dict[str, Any]], columns: Sequence[tuple[str, str]], ratios: Sequence[tuple[str, str]]
) -> str:
    """Metric, a column per ``(kind, heading)`` of ``columns`` present in ``med``, and a ratio
    column per ``(num, den)`` pair of kinds (num/den) with both present."""
    shown = [(k, h) for k, h in columns if k in med]
    heads = dict(shown)
    pairs = [(n, d) for n, d in ratios if n in heads and d in heads]
    rows: list[Sequence[str]] = [
        ("metric", *(h for _, h in shown), *(f"{heads[n]}/{heads[d]}" for n, d in pairs))
    ]
    for metric in _all_metrics({k: med[k] for k, _ in shown}):
        cells = [_fmt(metric, med[k].get(metric)) for k, _ in shown]
        rs = [ratio(med, metric, n, d) for n, d in pairs]
        rows.append((_label(metric), *cells, *("" if r is None else f"{r:.2f}x" for r in rs)))
    return text_table(rows)


def _judge(metric: str, r: float | None) -> tuple[str, bool | None]:
    """The verdict on a ratio current/other: the bound and PASS/FAIL, or no verdict."""
    op = BETTER.get(metric.split("@")[0])
    if op is None:
        return "", None
    bound = 1 - TOLERANCE if op == ">=" else 1 + TOLERANCE
    if r is None:
        return "not measured", None
    ok = r >= bound if op == ">=" else r <= bound
    return f"{op} {bound:.2f}x: {'PASS' if ok else 'FAIL'}", ok


def regression(
    med: dict[str, dict[str, float]],
    pairs: Sequence[tuple[str, str]],
    metrics: Sequence[str] | None = None,
    prefixes: Sequence[str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """``--against``: per ``(current, other)`` pair of kinds and metric, both medians, the ratio
    current/other and, for the figures in ``BETTER``, the verdict within ``TOLERANCE``
    (throughput at least 0.95x the other's; latency, CPU and memory at most 1.05x).
    ``prefixes``: a label per pair, before each row's (pipeline.py's configurations)."""
    other = pairs[0][1].partition("@")[2] if pairs else "against"
    rows: list[Sequence[str]] = [("metric", other, "this tree", f"this tree/{other}", "verdict")]
    found: dict[str, Any] = {}
    for i, (cur, oth) in enumerate(pairs):
        pair = {k: med.get(k, {}) for k in (cur, oth)}
        names = list(metrics) if metrics is not None else _all_metrics(pair)
        for metric, row in zip(names, _rows(med, names, oth, cur, prefixes[i] if prefixes else "", 3),
                               strict=True):
            verdict, ok = _judge(metric, ratio(med, metric, cur, oth))
            rows.append((*row, verdict))
            if ok is not None:
                found[f"{cur}:{metric}"] = {"current": pair[cur][metric], "against": pair[oth][metric],
                                            "ratio": pair[cur][metric] / pair[oth][metric], "pass": ok}
    failed = [k for k, v in found.items() if not v["pass"]]
    missing = sum(1 for r in rows if r[-1] == "not measured")
    summary = f"regression check (this tree/{other}, medians, tolerance {TOLERANCE:.0%}): " + (
        f"{len(failed)} of {len(found)} judged rows FAIL: {', '.join(failed)}" if failed
        else f"all {len(found)} judged rows PASS" if found else "no row judged"
    ) + (f"; {missing} row(s) not measured on both sides" if missing else "")
    return f"{text_table(rows)}\n{summary}", found


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
