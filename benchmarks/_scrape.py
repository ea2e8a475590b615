"""``metrics_plot.py``'s scrape series: GET /metrics, keep every sample, and the PromQL maths.

A scrape is the exposition text parsed with prometheus-client's
``text_string_to_metric_families``; a :class:`Series` keeps one value per
scrape for every (sample name, labels) seen (``*_created`` samples left out),
and saves to / loads from JSON. What the plots need is computed from it the
way PromQL would over a real Prometheus's scrapes:

- :meth:`Series.rate`: a counter's increase between consecutive scrapes / their
  time apart (a series that appears later was 0 before: prometheus-client
  creates a labelled child on first use);
- :meth:`Series.quantile`: ``histogram_quantile`` of a histogram's bucket
  increases over a window (linear interpolation inside the bucket; the
  ``+Inf`` bucket answers with the highest finite bound), no extrapolation.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels]


async def fetch_metrics(port: int, path: str = "/metrics", timeout: float = 5.0) -> str:
    """One scrape of ``http://127.0.0.1:<port><path>`` (a direct loopback request, no
    forwarding headers: the exporter serves it without ``admin``)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            raw = await reader.read()
        finally:
            writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise RuntimeError(f"GET {path}: {status.decode(errors='replace')}")
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return body.decode()


def _unchunk(body: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        line_end = body.index(b"\r\n", pos)
        size = int(body[pos:line_end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[line_end + 2 : line_end + 2 + size]
        pos = line_end + 2 + size + 2


def parse(text: str) -> dict[Key, float]:
    """Every sample of a scrape but ``*_created``, by (sample name, sorted labels)."""
    out: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.endswith("_created"):
                out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


@dataclass
class Series:
    """One value per scrape for every sample seen; ``None`` before a sample first appeared."""

    times: list[float] = field(default_factory=list)  # seconds since the run started
    values: dict[Key, list[float | None]] = field(default_factory=dict)

    def add(self, t: float, samples: Mapping[Key, float]) -> None:
        n = len(self.times)
        self.times.append(t)
        for key, value in samples.items():
            self.values.setdefault(key, [None] * n).append(value)
        for column in self.values.values():
            if len(column) == n:
                column.append(None)

    # --- selection --------------------------------------------------------------------
    def select(self, name: str, **match: str) -> dict[Labels, list[float | None]]:
        """The series of sample ``name`` whose labels include ``match``."""
        return {labels: column for (n, labels), column in self.values.items()
                if n == name and all(dict(labels).get(k) == v for k, v in match.items())}

    def total(self, name: str, by: str | None = None, **match: str) -> dict[str, list[float]]:
        """``sum by (by) (name{match})`` per scrape; a missing value counts as 0."""
        out: dict[str, list[float]] = {}
        for labels, column in self.select(name, **match).items():
            group = dict(labels).get(by, "") if by else ""
            acc = out.setdefault(group, [0.0] * len(self.times))
            for i, v in enumerate(column):
                acc[i] += v or 0.0
        return out

    def label_values(self, name: str, label: str) -> list[str]:
        return sorted({dict(labels)[label] for labels in self.select(name) if label in dict(labels)})

    # --- PromQL-like ------------------------------------------------------------------
    def rate(self, column: list[float], window: float = 0.0) -> list[float]:
        """Per-second increase of a counter at each scrape over ``window`` seconds (0: since the
        previous scrape); NaN where there is no earlier scrape far enough back."""
        out = []
        for i, t in enumerate(self.times):
            j = self._back(i, window)
            out.append(math.nan if j is None else
                       max(0.0, column[i] - column[j]) / (t - self.times[j]))
        return out

    def _back(self, i: int, window: float) -> int | None:
        """The latest scrape at least ``window`` seconds before scrape ``i`` (tolerating
        0.2 s of jitter), or the previous one when ``window`` is 0."""
        if window <= 0:
            return i - 1 if i > 0 else None
        t = self.times[i] - window + 0.2
        for j in range(i - 1, -1, -1):
            if self.times[j] <= t:
                return j
        return None

    def quantile(self, q: float, name: str, window: float, **match: str) -> list[float]:
        """``histogram_quantile(q, sum by (le) (increase(name_bucket{match}[window])))`` at
        each scrape; NaN where the window saw no observation."""
        buckets = self.total(f"{name}_bucket", by="le", **match)
        bounds = sorted(buckets, key=float)
        out = []
        for i in range(len(self.times)):
            j = self._back(i, window)
            if j is None:
                out.append(math.nan)
                continue
            out.append(histogram_quantile(q, [(float(b), buckets[b][i] - buckets[b][j]) for b in bounds]))
        return out


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """PromQL's ``histogram_quantile`` over cumulative ``(le, count)`` pairs, ``+Inf`` last."""
    pairs = sorted(buckets)
    if not pairs or pairs[-1][1] <= 0 or not math.isinf(pairs[-1][0]):
        return math.nan
    rank = q * pairs[-1][1]
    lower, below = 0.0, 0.0
    for i, (le, count) in enumerate(pairs):
        if count >= rank:
            if math.isinf(le):
                return pairs[i - 1][0] if i > 0 else math.nan
            if i == 0 and le <= 0:
                return le
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return math.nan


# --- saving -----------------------------------------------------------------------------
def to_json(series: Series) -> dict[str, Any]:
    return {
        "times": [round(t, 4) for t in series.times],
        "series": [{"name": name, "labels": dict(labels), "values": column}
                   for (name, labels), column in sorted(series.values.items())],
    }


def from_json(data: Mapping[str, Any]) -> Series:
    series = Series(times=[float(t) for t in data["times"]])
    for item in data["series"]:
        key = (str(item["name"]), tuple(sorted((str(k), str(v)) for k, v in item["labels"].items())))
        series.values[key] = [None if v is None else float(v) for v in item["values"]]
    return series


async def scrape_every(
    port: int, interval: float, start: float, series: Series, errors: list[str],
    extra: Callable[[], Mapping[Key, float]] | None = None, clock: Callable[[], float] = time.monotonic,
) -> None:
    """Scrape every ``interval`` seconds until cancelled. A scrape's time (seconds since
    ``start``) is when its reply arrived: the server renders the text when its event loop
    gets to the request, so a busy server's scrape is stamped late rather than early. The
    next scrape starts at the next multiple of ``interval``, and at least half an interval
    after the reply. ``extra()``: samples of our own added to each scrape (read when its
    reply came). A failed scrape is noted in ``errors``."""
    due = start
    while True:
        due += interval
        await asyncio.sleep(max(0.0, due - clock()))
        sent = clock()
        try:
            text = await fetch_metrics(port)
        except (OSError, RuntimeError, TimeoutError) as exc:
            errors.append(f"{sent - start:.1f}s: {exc!r}")
            continue
        arrived = clock()
        samples = parse(text)
        if extra is not None:
            samples.update(extra())
        series.add(arrived - start, samples)
        while due < arrived - interval / 2:
            due += interval
