"""Plots of the Prometheus metrics from a real scrape series taken during a scripted load.

    python benchmarks/metrics_plot.py                 # ~90 s run; series and PNGs under /tmp
    python benchmarks/metrics_plot.py --write-docs    # the PNGs into docs/images/metrics-*.png
    python benchmarks/metrics_plot.py --from /tmp/dialogue-metrics.json [--write-docs]   # re-render

The server is ``dialogue_server.py`` (``fanout.py``'s: one anonymous room ``bench``, library
defaults) with ``DIALOGUE_BENCH_METRICS=1``, one ``uvicorn --ws websockets-sansio``
subprocess pinned to CPU 0; this process (the load generator and the scraper, one uvloop
event loop) is pinned to CPU 1. ``GET /metrics`` is scraped every ``--interval`` second(s)
(a direct loopback request, which the exporter serves without ``admin``) and parsed with
``prometheus_client.parser.text_string_to_metric_families``. The load, in phases:

1. **ramp up**: a publisher publishes ``--rate`` events/s (``fanout.py``'s chat-sized event)
   into ``bench`` for the whole run; ``--connections`` subscribers join it in ``--steps`` steps;
2. **steady**: all of them, for ``--steady`` s;
3. **slow consumers**: the publisher's second connection creates the runtime room
   ``firehose`` and publishes two events there: ``tick`` (``--tick-bytes``, ``--tick-rate``/s)
   and ``blob`` (``--blob-bytes``, ``--blob-rate``/s), read by ``--fast-readers`` connections.
   Then ``--slow-waves`` waves of ``--slow-per-wave`` connections join ``bench`` and
   ``firehose`` and stop reading (their receive buffer set to 16 KiB): half subscribe to
   ``tick`` only, so their send queue overflows its message bound
   (``send_queue_max_messages``, 1024) first, half to ``blob`` only, so theirs overflows the
   byte bound (``send_queue_max_bytes``, 8 MiB) first. The server's socket buffer
   (~4 MB on loopback here) fills before the queue does, which is why the room is a
   firehose: at ``bench``'s rate a stalled connection would take minutes to be cut;
4. **ramp down**: the subscribers leave in ``--steps`` steps.

Before it starts, the run waits (``--wait-quiet``) for both cores to be quiet; the summary it
prints gives, per phase, the server's and the load generator's CPU and the foreign load
(other processes on the two cores). ``--repo DIR``: the server imports DIR's library (a
clone at a commit, say, while this tree is being edited).

The series (every sample of every scrape, the phases, what the load generator counted and
the context) is saved as JSON (``--out``). Four PNGs (900x400) are rendered from it:
``metrics-connections.png`` (``dialogue_connections_active``), ``metrics-delivered.png``
(the rate of ``dialogue_messages_delivered_total``), ``metrics-latency.png`` (p50/p99 of
``dialogue_events_latency_seconds`` per room label: PromQL's ``histogram_quantile`` over the
bucket increases of ``--window`` seconds) and ``metrics-drops.png``
(``dialogue_messages_dropped_total`` per second and ``dialogue_slow_consumers_total`` by
reason). Needs matplotlib: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from _client import Publisher, close_all, publisher, send_json, subscribers
from _cpu import busy_seconds, wait_for_quiet
from _rawreader import FrameReader, keep_alive, take_over
from _reps import new_loop, setup_process
from _runner import Pinning
from _scrape import Key, Series, from_json, scrape_every, to_json
from _servers import REPO_DIR, library_file, library_state, running_server
from _tally import Tally
from websockets.asyncio.client import ClientConnection, connect

DOCS_IMAGES = REPO_DIR / "docs" / "images"
DEFAULT_OUT = Path("/tmp/dialogue-metrics.json")
DEFAULT_IMAGES = Path("/tmp/dialogue-metrics")
FIREHOSE = "firehose"
SLOW_RCVBUF = 16 * 1024
CONNECT_CONCURRENCY = 32
NOISE_LIMIT = 0.15  # cores: wait (--wait-quiet) for the pinned cores to be this quiet first


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = p.add_argument
    add("--out", type=Path, default=DEFAULT_OUT, help=f"the series as JSON (default {DEFAULT_OUT})")
    add("--from", dest="source", type=Path, help="re-render the plots of a saved series, no load")
    add("--write-docs", action="store_true", help=f"write the PNGs into {DOCS_IMAGES.relative_to(REPO_DIR)}/")
    add("--images", type=Path, default=DEFAULT_IMAGES, help=f"PNG directory otherwise ({DEFAULT_IMAGES})")
    add("--repo", type=Path, default=REPO_DIR,
        help="the checkout whose dialogue_fastapi the server imports (default: this one; e.g. a clone "
             "at a commit, when this tree is being edited)")
    add("--wait-quiet", type=float, default=60.0,
        help=f"seconds to wait for the two cores to be under {NOISE_LIMIT:g} cores busy before starting")
    add("--interval", type=float, default=1.0, help="seconds between scrapes")
    add("--window", type=float, default=5.0, help="seconds of bucket increases per latency quantile")
    add("--connections", type=int, default=1000, help="subscribers of bench at the top of the ramp")
    add("--steps", type=int, default=4, help="ramp steps, up and down")
    add("--step-every", type=float, default=6.0, help="seconds between ramp-up steps")
    add("--down-every", type=float, default=4.0, help="seconds between ramp-down steps")
    add("--rate", type=float, default=20.0, help="publishes/s into bench (whole run)")
    add("--steady", type=float, default=12.0, help="seconds at the top before the slow consumers")
    add("--fast-readers", type=int, default=10, help="connections that read the firehose")
    add("--tick-rate", type=float, default=300.0, help="tick events/s into the firehose")
    add("--tick-bytes", type=int, default=2048, help="tick payload size")
    add("--blob-rate", type=float, default=40.0, help="blob events/s into the firehose")
    add("--blob-bytes", type=int, default=32768, help="blob payload size")
    add("--slow-waves", type=int, default=4, help="waves of slow consumers")
    add("--slow-per-wave", type=int, default=10, help="slow consumers per wave (half tick, half blob)")
    add("--wave-every", type=float, default=5.0, help="seconds between waves")
    add("--slow-tail", type=float, default=12.0, help="seconds of firehose after the last wave")
    return p.parse_args(argv)


# --- the load -------------------------------------------------------------------------------
class Clock:
    """Seconds since the run started; phases as (name, start, end). Each step of the script
    waits from the end of the previous one, so a slow step delays the rest, never shortens it."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.cursor = 0.0  # when the last step ended (or was due)
        self.phases: list[dict[str, Any]] = []
        self.marks: list[dict[str, Any]] = []

    def now(self) -> float:
        return time.monotonic() - self.start

    async def wait(self, delay: float) -> None:
        self.cursor += delay
        await asyncio.sleep(max(0.0, self.cursor - self.now()))

    def phase(self, name: str) -> None:
        t = round(self.now(), 3)
        if self.phases:
            self.phases[-1]["end"] = t
        self.phases.append({"name": name, "start": t, "end": None})

    def mark(self, what: str) -> None:
        self.cursor = max(self.cursor, self.now())
        self.marks.append({"t": round(self.now(), 3), "what": what})
        print(f"  {self.now():6.1f} s  {what}", flush=True)


class Stream:
    """One paced, open-loop stream of publishes (it does not wait for the replies)."""

    def __init__(self, name: str, rate: float, send: Callable[[int], Awaitable[None]]) -> None:
        self.name, self.rate, self.send = name, rate, send
        self.sent = self.skipped = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start, i = loop.time(), 0
        while True:
            due, now = start + i / self.rate, loop.time()
            if now < due:
                await asyncio.sleep(due - now)
            elif now - due > 1.0:  # over a second behind: skip the backlog rather than burst it
                skip = int((now - due) * self.rate)
                i, self.skipped = i + skip, self.skipped + skip
                continue
            await self.send(i)
            self.sent += 1
            i += 1


async def command(ws: ClientConnection, ids: itertools.count[int], op: str, **fields: Any) -> dict[str, Any]:
    """Send a command and wait for its reply (other frames are skipped); raise if refused."""
    cmd_id = next(ids)
    await send_json(ws, {"op": op, "id": cmd_id, **fields})
    while True:
        msg: dict[str, Any] = orjson.loads(await ws.recv(decode=False))
        if msg.get("id") == cmd_id:
            if not msg.get("ok"):
                raise RuntimeError(f"{op} refused: {msg.get('error')!r}")
            return msg


async def member(port: int, joins: list[dict[str, Any]], rcvbuf: int | None = None) -> ClientConnection:
    """A connection that joined rooms (``joins``: the join commands' fields); ``rcvbuf``: its
    socket's receive buffer, set before connecting."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        ws = await connect(f"ws://127.0.0.1:{port}/ws", sock=sock, compression=None, ping_interval=None,
                           open_timeout=20, close_timeout=2)
    except BaseException:
        sock.close()
        raise
    try:
        if orjson.loads(await ws.recv(decode=False)).get("op") != "hello":
            raise RuntimeError("no hello")
        ids = itertools.count(1)
        for fields in joins:
            await command(ws, ids, "join", **fields)
    except BaseException:
        ws.transport.abort()
        raise
    return ws


async def members(port: int, count: int, joins: list[dict[str, Any]], rcvbuf: int | None = None
                  ) -> list[ClientConnection]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> ClientConnection:
        async with gate:
            return await member(port, joins, rcvbuf)

    return list(await asyncio.gather(*(one() for _ in range(count))))


def abort(readers: list[FrameReader]) -> None:
    for reader in readers:
        reader.transport.abort()


async def drive(port: int, url: str, a: argparse.Namespace, clock: Clock) -> dict[str, Any]:
    """The scripted load; returns what the load generator counted."""
    group_size = [a.connections // a.steps + (i < a.connections % a.steps) for i in range(a.steps)]
    tallies: list[Tally] = []
    fast, slow = Tally(), Tally()
    slow_readers: list[FrameReader] = []
    streams: list[Stream] = []
    firehose_pub: Publisher | None = None
    async with AsyncExitStack() as stack:
        pub = await stack.enter_async_context(publisher(url))
        bench = Stream("bench", a.rate, pub.publish)
        streams.append(bench)
        bench.start()
        stack.push_async_callback(bench.stop)  # before the publisher closes, whatever happens
        clock.mark(f"publisher: {a.rate:g} publishes/s into bench")

        clock.phase("ramp up")
        groups: list[AsyncExitStack] = []
        for i, n in enumerate(group_size):
            await clock.wait(3.0 if i == 0 else a.step_every)
            group = AsyncExitStack()
            stack.push_async_callback(group.aclose)
            tallies.append(await group.enter_async_context(subscribers(url, n, raw=True)))
            groups.append(group)
            clock.mark(f"+{n} subscribers ({sum(group_size[: i + 1])})")
        await clock.wait(3.0)
        clock.phase("steady")
        await clock.wait(a.steady)
        clock.phase("slow consumers")
        ws = await member(port, [])
        stack.push_async_callback(close_all, [ws])
        ids = itertools.count(1)
        await command(ws, ids, "create_room", room=FIREHOSE, name=FIREHOSE)
        await command(ws, ids, "join", room=FIREHOSE)
        await command(ws, ids, "unsubscribe", room=FIREHOSE, events=["tick", "blob"])
        firehose_pub = Publisher(ws)
        stack.push_async_callback(firehose_pub.aclose)
        readers = [take_over(c, fast) for c in await members(port, a.fast_readers, [{"room": FIREHOSE}])]
        stack.callback(abort, readers)
        pinger = asyncio.create_task(keep_alive(readers))
        stack.callback(pinger.cancel)

        def publish_to(event: str, size: int) -> Callable[[int], Awaitable[None]]:
            pad = "x" * size
            fp = firehose_pub

            async def send(i: int) -> None:
                assert fp is not None
                await send_json(fp.ws, {"op": "publish", "id": next(fp.ids), "room": FIREHOSE,
                                        "event": event, "data": {"i": i, "t": time.time_ns(), "pad": pad}})
            return send

        ticks = Stream("tick", a.tick_rate, publish_to("tick", a.tick_bytes))
        blobs = Stream("blob", a.blob_rate, publish_to("blob", a.blob_bytes))
        streams += [ticks, blobs]
        for stream in (ticks, blobs):
            stream.start()
            stack.push_async_callback(stream.stop)
        clock.mark(f"firehose: {a.fast_readers} readers; tick {a.tick_bytes} B at {a.tick_rate:g}/s, "
                   f"blob {a.blob_bytes} B at {a.blob_rate:g}/s")
        stack.callback(abort, slow_readers)
        for w in range(a.slow_waves):
            await clock.wait(2.0 if w == 0 else a.wave_every)
            half = a.slow_per_wave // 2
            waves = await asyncio.gather(*(
                members(port, n, [{"room": "bench"}, {"room": FIREHOSE, "subscriptions": [event]}],
                        rcvbuf=SLOW_RCVBUF)
                for event, n in (("tick", half), ("blob", a.slow_per_wave - half))))
            for c in itertools.chain(*waves):
                reader = take_over(c, slow)
                reader.transport.pause_reading()  # stop reading: the server's queue for it grows
                slow_readers.append(reader)
            clock.mark(f"slow consumers, wave {w + 1}: {half} tick + {a.slow_per_wave - half} blob "
                       "stop reading")
        await clock.wait(a.slow_tail)
        await ticks.stop()
        await blobs.stop()
        pinger.cancel()
        abort([*readers, *slow_readers])
        clock.mark("firehose stopped; its readers and the slow consumers gone")

        clock.phase("ramp down")
        for i, group in enumerate(reversed(groups)):
            await clock.wait(2.0 if i == 0 else a.down_every)
            await group.aclose()
            clock.mark(f"-{group_size[len(groups) - 1 - i]} subscribers")
        await clock.wait(4.0)
        clock.phase("end")
        for s in streams:
            await s.stop()
    clock.phases.pop()  # "end" only closed the last phase
    replies = {"bench": {"acked": pub.acked, "errors": dict(pub.errors)}}
    if firehose_pub is not None:
        replies["firehose"] = {"acked": firehose_pub.acked, "errors": dict(firehose_pub.errors)}
    return {
        "published": {s.name: {"sent": s.sent, "skipped": s.skipped} for s in streams},
        "replies": replies,
        "bench_subscribers_received": sum(x.delivered for x in tallies),
        "bench_subscribers_closed_by_server": {str(k): v for k, v in sum((x.closes for x in tallies),
                                                                        Counter[int | None]()).items()},
        "firehose_readers_received": fast.delivered,
        "slow_consumers": len(slow_readers),
    }


def context(split: str, a: argparse.Namespace) -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    state = library_state(a.repo)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "dialogue_fastapi"], cwd=a.repo,
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(), "cpu_model": model, "split": split,
        "commit": state["commit"] + (" + uncommitted changes" if dirty else ""),
        "newest_library_file": state["newest_file"],
        "python": platform.python_version(),
        "command": "python benchmarks/metrics_plot.py " + " ".join(sys.argv[1:]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
    }


async def run(a: argparse.Namespace, split: str, pins: Pinning) -> dict[str, Any]:
    series, errors = Series(), list[str]()
    ctx = context(split, a) | {"pinned": {"server": pins.server, "loadgen": pins.client}}
    cpus = sorted(c for c in (pins.server, pins.client) if c is not None)
    if cpus:
        load = await wait_for_quiet(set(cpus), NOISE_LIMIT, max_wait=a.wait_quiet)
        if load >= NOISE_LIMIT:
            print(f"cores still {load:.0%} busy with other processes; measuring anyway", flush=True)
    env = {"DIALOGUE_BENCH_METRICS": "1"}
    async with running_server("dialogue", pins.server, env=env, repo=a.repo) as server:
        clock = Clock()
        def cpu() -> dict[Key, float]:  # not the server's metrics: /proc, for the summary
            busy = busy_seconds()
            return {("bench_server_cpu_seconds_total", ()): server.cpu_seconds(),
                    ("bench_loadgen_cpu_seconds_total", ()): time.process_time(),
                    **{("bench_cpu_busy_seconds_total", (("cpu", str(c)),)): busy[c] for c in cpus}}

        scraper = asyncio.create_task(
            scrape_every(server.port, a.interval, clock.start, series, errors, extra=cpu))
        try:
            client = await drive(server.port, server.url, a, clock)
        finally:
            scraper.cancel()
            await asyncio.gather(scraper, return_exceptions=True)
    return {"context": ctx, "phases": clock.phases, "marks": clock.marks, "client": client,
            "scrape_errors": errors, **to_json(series)}


# --- the plots ------------------------------------------------------------------------------
PHASE_COLOURS = {"ramp up": "#e8f0fb", "steady": "#eef7ea", "slow consumers": "#fdeeee",
                 "ramp down": "#f4f0fa"}
LATENCY = "dialogue_events_latency_seconds"


def render(data: dict[str, Any], out_dir: Path, window: float) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    series = from_json(data)
    times, ctx = series.times, data["context"]
    footer = (f"{ctx['date']}; {ctx['cpus']} CPUs ({ctx['cpu_model']}): {ctx['split']}\n"
              f"dialogue-fastapi at {ctx['commit']}; benchmarks/dialogue_server.py (memory broker, "
              f"library defaults); /metrics scraped every {ctx['settings']['interval']:g} s; "
              "benchmarks/metrics_plot.py")
    out_dir.mkdir(parents=True, exist_ok=True)
    thousands = FuncFormatter(lambda v, _: f"{v:,.0f}")

    def figure(title: str) -> tuple[Figure, Axes]:
        fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
        ax.set_title(title, fontsize=10, loc="left", pad=16)
        ax.set_xlabel("time since start (s)")
        for ph in data["phases"]:
            end = ph["end"] if ph["end"] is not None else times[-1]
            ax.axvspan(ph["start"], end, color=PHASE_COLOURS.get(ph["name"], "#f2f2f2"), zorder=0, lw=0)
            ax.text((ph["start"] + end) / 2, 1.0, ph["name"], transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=7.5, color="0.35")
        ax.set_xlim(0, times[-1] if times else 1)
        ax.grid(True, color="0.85", lw=0.5)
        fig.text(0.01, 0.01, footer, fontsize=6.5, color="0.4", linespacing=1.3)
        return fig, ax

    def save(fig: Figure, name: str) -> Path:
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        path = out_dir / f"metrics-{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    paths = []
    # 1. open connections
    fig, ax = figure("Open connections: dialogue_connections_active (gauge)")
    active = series.total("dialogue_connections_active").get("", [0.0] * len(times))
    ax.plot(times, active, color="#1f5fa8", lw=1.6, drawstyle="steps-post")
    ax.set_ylabel("connections")
    ax.yaxis.set_major_formatter(thousands)
    ax.set_ylim(0, max([*active, 1]) * 1.12)
    paths.append(save(fig, "connections"))

    # 2. delivered messages per second
    fig, ax = figure("Delivered messages/s: rate(dialogue_messages_delivered_total) "
                     "(events queued to connections)")
    delivered = series.total("dialogue_messages_delivered_total").get("", [0.0] * len(times))
    per_scrape, smooth = series.rate(delivered), series.rate(delivered, window)
    ax.plot(times, per_scrape, color="#9bbbe0", lw=0.9, label="per scrape interval (1 s)")
    ax.plot(times, smooth, color="#1f5fa8", lw=1.8, label=f"over {window:g} s")
    ax.set_ylabel("messages/s")
    ax.yaxis.set_major_formatter(thousands)
    ax.set_ylim(0, max([v for v in per_scrape if not math.isnan(v)] + [1]) * 1.12)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    paths.append(save(fig, "delivered"))

    # 3. latency quantiles per room label
    fig, ax = figure(f"Publish latency: histogram_quantile over {window:g} s of "
                     "dialogue_events_latency_seconds buckets")
    names = {"bench": "bench (1 publisher, up to ~1,000 members)",
             "runtime": "firehose (room label \"runtime\", ~10-50 members)"}
    colours = {"bench": "#1f5fa8", "runtime": "#c0392b"}
    finite: list[float] = []
    for room in series.label_values("dialogue_events_latency_seconds_bucket", "room"):
        colour = colours.get(room, "0.3")
        for q, style in ((0.5, "-"), (0.99, "--")):
            values = [v * 1000 for v in series.quantile(q, LATENCY, window, room=room)]
            finite += [v for v in values if not math.isnan(v)]
            ax.plot(times, values, style, color=colour, lw=1.5,
                    label=f"p{round(q * 100)} {names.get(room, room)}")
    bounds = sorted({float(le) for le in series.label_values("dialogue_events_latency_seconds_bucket", "le")
                     if le != "+Inf"})
    ax.set_yscale("log")
    ax.set_yticks([b * 1000 for b in bounds])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_ylabel("ms (ticks: bucket bounds)")
    if finite:  # room above the lines for the legend
        ax.set_ylim(min(finite) / 1.5, max(finite) * 15)
    legend = ax.legend(loc="upper left", fontsize=7.5, framealpha=0.9, ncol=2, title_fontsize=7,
                       title="interpolated inside a bucket, as histogram_quantile does: a value between "
                             "two ticks is only known to lie between them")
    legend.get_title().set_color("0.35")
    paths.append(save(fig, "latency"))

    # 4. drops and slow consumers
    fig, ax = figure("Slow consumers: dialogue_messages_dropped_total and dialogue_slow_consumers_total")
    dropped = series.total("dialogue_messages_dropped_total", by="reason")
    slow = series.total("dialogue_slow_consumers_total", by="reason")
    reason_colours = {"queue_messages": "#e67e22", "queue_bytes": "#8e44ad"}
    bottom = [0.0] * len(times)
    widths = [times[i] - times[i - 1] if i else 1.0 for i in range(len(times))]
    for reason, column in sorted(dropped.items()):
        rate = [0.0 if math.isnan(v) else v for v in series.rate(column)]
        ax.bar([t - w for t, w in zip(times, widths, strict=True)], rate, width=widths, bottom=bottom,
               align="edge", color=reason_colours.get(reason, "0.5"), alpha=0.75,
               label=f"dropped msgs/s, reason={reason}")
        bottom = [b + r for b, r in zip(bottom, rate, strict=True)]
    ax.set_ylabel("dropped messages/s")
    ax.yaxis.set_major_formatter(thousands)
    ax.set_ylim(0, max([*bottom, 1]) * 1.25)
    right = ax.twinx()
    for (reason, column), style in zip(sorted(slow.items()), itertools.cycle(("-", "--")), strict=False):
        right.plot(times, column, style, color=reason_colours.get(reason, "0.3"), lw=1.8,
                   drawstyle="steps-post", label=f"closed 4009 (total), reason={reason}")
    right.set_ylabel("slow consumers closed with 4009 (total)")
    right.set_ylim(0, max([max(c) for c in slow.values()] + [1]) * 1.25)
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=7.5, framealpha=0.9)
    paths.append(save(fig, "drops"))
    return paths


# --- the report -----------------------------------------------------------------------------
def summary(data: dict[str, Any], window: float) -> list[str]:
    """The figures the docs quote, per phase."""
    series = from_json(data)
    times = series.times
    active = series.total("dialogue_connections_active").get("", [0.0] * len(times))
    zero = [0.0] * len(times)
    delivered = series.rate(series.total("dialogue_messages_delivered_total").get("", zero), window)
    lines = []
    for ph in data["phases"]:
        end = ph["end"] if ph["end"] is not None else times[-1]
        idx = [i for i, t in enumerate(times) if ph["start"] + window <= t <= end]
        if not idx:
            continue
        d = [delivered[i] for i in idx if not math.isnan(delivered[i])]
        lat = []
        for room in series.label_values("dialogue_events_latency_seconds_bucket", "room"):
            for q in (0.5, 0.99):
                v = [x for i, x in enumerate(series.quantile(q, LATENCY, window, room=room))
                     if i in idx and not math.isnan(x)]
                if v:
                    lat.append(f"{room} p{round(q * 100)} {min(v) * 1000:.2f}-{max(v) * 1000:.2f} ms")
        cpu = []
        if idx[-1] > idx[0]:
            first, last = idx[0], idx[-1]
            span = times[last] - times[first]
            own = {}
            for who in ("server", "loadgen"):
                column = series.total(f"bench_{who}_cpu_seconds_total").get("")
                if column:
                    own[who] = (column[last] - column[first]) / span
                    cpu.append(f"{who} CPU {own[who]:.0%}")
            busy = series.total("bench_cpu_busy_seconds_total", by="cpu")
            pinned = data["context"].get("pinned", {})
            foreign = [(busy[str(cpu_)][last] - busy[str(cpu_)][first]) / span - own[who]
                       for who, cpu_ in pinned.items() if str(cpu_) in busy and who in own]
            if foreign:
                cpu.append(f"foreign load {max(0.0, *foreign):.0%}")
        lines.append(f"{ph['name']} ({ph['start']:.0f}-{end:.0f} s): connections max "
                     f"{max(active[i] for i in idx):,.0f}; delivered/s ({window:g} s) "
                     f"{min(d, default=0):,.0f}-{max(d, default=0):,.0f}; " + "; ".join(cpu + lat))
    for name, by in (("dialogue_messages_dropped_total", "reason"),
                     ("dialogue_slow_consumers_total", "reason"),
                     ("dialogue_connections_closed_total", "code")):
        totals = {k: v[-1] for k, v in series.total(name, by=by).items()}
        lines.append(f"{name} at the end: " + (", ".join(f"{k}={v:,.0f}" for k, v in sorted(totals.items()))
                                                 or "none"))
    return lines


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    images = DOCS_IMAGES if a.write_docs else a.images
    if a.source is not None:
        data = json.loads(a.source.read_text())
    else:
        a.repo = a.repo.resolve()
        if not library_file(a.repo).is_relative_to(a.repo):
            raise SystemExit(f"--repo {a.repo}: its server would import dialogue_fastapi from elsewhere")
        pins, split = setup_process()
        print(f"machine: {os.cpu_count()} CPUs; {split}; scrape every {a.interval:g} s", flush=True)
        try:
            with asyncio.Runner(loop_factory=new_loop) as runner:
                data = runner.run(run(a, split, pins))
        except KeyboardInterrupt:
            print("interrupted; server stopped", file=sys.stderr)
            return 130
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(data))
        print(f"series: {a.out} ({len(data['times'])} scrapes, {len(data['scrape_errors'])} failed)")
        print("load generator: " + json.dumps(data["client"]))
    print("\n".join(summary(data, a.window)))
    for path in render(data, images, a.window):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
