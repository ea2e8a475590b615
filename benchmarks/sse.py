"""SSE fan-out benchmark: dialogue-fastapi's ``GET /sse`` against a plain sse-starlette server.

    python benchmarks/sse.py [--quick] [--reps 3] [--only plain|dialogue] [--subscribers 100,1000]
                             [--json out.json] [--against DIR]

- **plain** (``sse_baseline_server.py``, the ceiling): Starlette, ``GET /sse``
  returns sse-starlette's ``EventSourceResponse`` over a generator fed by a
  bounded queue per stream; each event is encoded once (orjson, then the
  whole SSE message) and the generator writes whatever is queued as one chunk;
- **dialogue** (``dialogue_server.py``, as in ``fanout.py``): one anonymous
  room, library defaults, its router's ``GET /sse``.

Both are published to the same way: one WebSocket connection at ``/ws`` that
joined the room and unsubscribed from the event (so every counted delivery is
an SSE one), sending ``publish`` commands and counting the replies. The N
subscribers are HTTP/1.1 ``GET /sse?room=bench`` streams read by a small
asyncio protocol (chunked transfer decoding, SSE framing on ``\\n`` or
``\\r\\n``), so the load generator stays cheap: in the throughput phase it
counts the ``event:`` lines of complete messages, in the latency phase it
decodes each ``data:`` with orjson. Its CPU is reported as in ``fanout.py``;
the table also gives the SSE messages per HTTP chunk (each server's batching).

CPU split (2 cores): each server is a ``uvicorn --ws websockets-sansio``
subprocess pinned to CPU 0, this process (the load generator, one event loop)
to CPU 1. Per kind and repetition (alternating, ABBA), on a fresh server after
a short warm-up, for each N: throughput (``--window`` publishes in flight for
``--duration`` s, the backlog bounded by ``--max-lag``; delivered msgs/s,
server CPU per delivered message), then publish-to-delivery latency at a fixed
offered rate (``--rates``), from the ``time.time_ns()`` the publisher put in
the event's data. Medians over the repetitions, the ratios dialogue/plain and
the target: delivered msgs/s at least 0.7x the plain server's, for every N.

``--against DIR`` (another checkout of the library): the dialogue server also
runs on DIR's library, as the kind ``dialogue@<commit>`` alternated with this
tree's, and a second table compares the two (5% tolerance, see ``fanout.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.util import find_spec
from typing import Any, cast

import orjson
from _client import CONNECT_CONCURRENCY, EVENT, ROOM, Publishers, publishers
from _cpu import ForeignLoad
from _phases import latency, throughput
from _report import ratio, table
from _reps import (
    add_against,
    against_header,
    against_report,
    alternate,
    counts,
    fanout_args,
    fanout_parser,
    load_against,
    medians_of,
    quietest,
    run_all,
    server_for,
    setup_process,
    warn_if_changed,
    with_against,
    write_json,
)
from _runner import Pinning, figures, rate_for
from _servers import ServerProcess, library_state, running_server
from _tally import Tally

KINDS = ("plain", "dialogue")
APP = {"plain": "sse-plain", "dialogue": "dialogue"}  # _servers.APPS keys
COLUMNS = (("plain", "plain"), ("dialogue", "dialogue"))
EVENT_LINE = f"\nevent: {EVENT}\n".encode()  # after the id: line, in both servers' messages
TARGET_THROUGHPUT = 0.7
# Offered rates for the latency phase (publishes/s): 20k and 10k deliveries/s. An SSE message
# written alone costs dialogue ~24 us of server CPU at N=100 and ~44 us at N=1000 (the plain
# server ~14 and ~27 us), so fanout.py's 300/s and 20/s put dialogue at 70-90% of its core,
# where p99 is queueing. The run prints the servers' utilisation in this phase: keep it low.
DEFAULT_RATES = {100: 200.0, 1000: 10.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = fanout_parser(KINDS, DEFAULT_RATES)
    add = p.add_argument
    add("--no-batch", action="store_true", help="plain server: one SSE message per write")
    add_against(p)
    a = fanout_args(p, argv, DEFAULT_RATES)
    a.against = load_against(a.against)
    return a


# the SSE subscribers ---------------------------------------------------------------------
class SSEReader(asyncio.Protocol):
    """One ``GET /sse`` stream: HTTP/1.1 head, chunked body, SSE messages; counts ``event`` ones.

    The first message with ``data:`` (the hello) resolves ``ready``. A stream the
    server ends (a zero-size chunk, EOF) or refuses (status other than 200) counts
    in ``tally.closes`` (key None, or the status), as a close frame does in fanout.py.
    """

    def __init__(self, tally: Tally, ready: asyncio.Future[dict[str, Any]]) -> None:
        self.tally, self.ready = tally, ready
        self.transport: asyncio.Transport | None = None
        self.head: bytes | None = b""  # None once the response head is read
        self.chunked = True
        self.raw = b""  # undecoded chunked bytes
        self.text = b""  # decoded body not yet ending in a blank line
        self.chunks = 0  # HTTP chunks received: the server's writes (http.response.body messages)
        self.ended = False  # by the server, or by us (close())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.ended:
            return  # e.g. the last chunk's CRLF
        if self.head is not None:
            buf = self.head + data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.head = buf
                return
            head, data, self.head = buf[:end].decode("latin-1"), buf[end + 4 :], None
            status = int(head.split(" ", 2)[1])
            if status != 200:
                self._end(status, f"HTTP {status}: {head.splitlines()[0]}")
                return
            self.chunked = "transfer-encoding: chunked" in head.lower()
        body = self._dechunk(data) if self.chunked else data
        if body:
            self._messages(body)

    def _dechunk(self, data: bytes) -> bytes:
        buf = self.raw + data if self.raw else data
        pos, end, out = 0, len(buf), list[bytes]()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol].split(b";", 1)[0], 16)
            if size == 0:  # the last chunk: the server ended the stream
                self.raw = b""
                if out:
                    self._messages(b"".join(out))
                self._end(None, "the server ended the stream")
                return b""
            stop = eol + 2 + size
            if stop + 2 > end:
                break
            out.append(buf[eol + 2 : stop])
            pos = stop + 2
        self.raw = buf[pos:]
        self.chunks += len(out)
        return b"".join(out) if len(out) != 1 else out[0]

    def _messages(self, body: bytes) -> None:
        text = self.text + body if self.text else body
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n")  # a lone trailing \r waits for its \n
        tally = self.tally
        if tally.record_from is None and self.ready.done():
            # throughput: count the complete messages' event lines, parse nothing
            cut = text.rfind(b"\n\n")
            if cut >= 0:
                tally.delivered += text.count(EVENT_LINE, 0, cut + 2)
                text = text[cut + 2 :]
            self.text = text
            return
        blocks = text.split(b"\n\n")
        self.text = blocks.pop()
        loads = orjson.loads
        for block in blocks:
            data = None
            for line in block.split(b"\n"):
                if line[:5] == b"data:":
                    value = line[6:] if line[5:6] == b" " else line[5:]
                    data = value if data is None else data + b"\n" + value
            if data is None:
                continue  # a comment (heartbeat) or retry only
            msg = loads(data)
            if msg.get("op") == "event":
                tally.delivered += 1
                if tally.record_from is not None and msg["data"]["i"] >= tally.record_from:
                    tally.latencies.append(time.time_ns() - msg["data"]["t"])
            elif not self.ready.done():
                self.ready.set_result(msg)

    def _end(self, key: int | None, why: str) -> None:
        if not self.ended:
            self.ended = True
            self.tally.closes[key] += 1
            if not self.ready.done():
                self.ready.set_exception(RuntimeError(why))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(None, f"connection lost ({exc!r})")

    def close(self) -> None:
        self.ended = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


async def open_stream(port: int, tally: Tally, timeout: float = 20.0) -> SSEReader:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[dict[str, Any]] = loop.create_future()
    _, reader = await loop.create_connection(lambda: SSEReader(tally, ready), "127.0.0.1", port)
    assert reader.transport is not None
    reader.transport.write(
        f"GET /sse?room={ROOM} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n".encode()
    )
    try:
        async with asyncio.timeout(timeout):
            hello = await ready
    except BaseException:
        reader.close()
        raise
    if hello.get("op") != "hello":
        reader.close()
        raise RuntimeError(f"expected hello, got {hello!r}")
    return reader


class Streams:
    """The subscribers' streams: one tally, and the chunks they received."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.readers: list[SSEReader] = []

    @property
    def chunks(self) -> int:
        return sum(reader.chunks for reader in self.readers)


@asynccontextmanager
async def sse_subscribers(port: int, count: int) -> AsyncIterator[Streams]:
    """``count`` SSE streams of the room, each past its hello, counting what they receive."""
    streams, gate = Streams(), asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> None:
        async with gate:
            streams.readers.append(await open_stream(port, streams.tally))

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(count):
                group.create_task(one())
        yield streams
    finally:
        for reader in streams.readers:
            reader.close()
        await asyncio.sleep(0.2)  # let the server see the streams go before it may be stopped


@asynccontextmanager
async def room(server: ServerProcess, n: int) -> AsyncIterator[tuple[Streams, Publishers]]:
    async with sse_subscribers(server.port, n) as streams, publishers(server.url, 1) as pub:
        yield streams, pub


# the measurements ----------------------------------------------------------------------
async def measure_n(server: ServerProcess, n: int, args: argparse.Namespace, pins: Pinning) -> dict[str, Any]:
    async with room(server, n) as (streams, pub):
        tally = streams.tally
        load, chunks = ForeignLoad(pins.own(server)), streams.chunks
        tp = await throughput(server, pub, tally, n, args.duration, args.window, args.max_lag, timeout=60)
        foreign_tp, tp_chunks = load.cores(pins.own(server)), streams.chunks - chunks
        tp_delivered = tally.delivered
        load, chunks = ForeignLoad(pins.own(server)), streams.chunks
        lat = await latency(server, pub, tally, n, rate_for(args, n), args.latency_duration, 0.5, timeout=60)
        foreign_lat, lat_chunks = load.cores(pins.own(server)), streams.chunks - chunks
    out = figures(n, tp, lat, foreign_tp, foreign_lat)
    per_write = tp_delivered / max(tp_chunks, 1)
    lat_per_write = tally.delivered / max(lat_chunks, 1)
    print(f"      SSE messages per write: throughput {per_write:.1f}, latency {lat_per_write:.2f}")
    return out | {f"msgs_per_write@{n}": per_write, f"lat_msgs_per_write@{n}": lat_per_write}


async def run_one(kind: str, args: argparse.Namespace, pins: Pinning) -> dict[str, Any]:
    """A fresh server, a warm-up (20 streams, 0.5 s of throughput), then every N; bounded in time."""
    budget = 60 + len(args.subscribers) * (args.duration + args.latency_duration + 90)
    env = {"BENCH_SSE_BATCH": "0"} if args.no_batch else None
    base, repo = server_for(kind, args.against)
    out: dict[str, Any] = {}
    async with asyncio.timeout(budget), running_server(
        APP[base], pins.server, env=env, label=kind, repo=repo
    ) as server:
        async with room(server, 20) as (streams, pub):
            await throughput(server, pub, streams.tally, 20, 0.5, args.window, args.max_lag, timeout=20)
        for n in args.subscribers:
            out |= await measure_n(server, n, args, pins)
    return out


# report --------------------------------------------------------------------------------
def verdicts(med: dict[str, dict[str, float]], sizes: list[int]) -> tuple[str, dict[str, Any]]:
    lines = ["target (dialogue against plain, medians):"]
    found: dict[str, Any] = {}
    for n in sizes:
        r = ratio(med, f"deliv_per_s@{n}", "dialogue", "plain")
        head = f"  delivered msgs/s (N={n}) >= {TARGET_THROUGHPUT}x plain:"
        if r is None:
            lines.append(f"{head} not measured")
            continue
        ok = r >= TARGET_THROUGHPUT
        found[f"throughput_ratio@{n}"] = {"value": r, "pass": ok}
        lines.append(f"{head} {r:.2f}x -> {'PASS' if ok else 'FAIL'}")
    return "\n".join(lines), found


def print_header(args: argparse.Namespace, split: str, library: dict[str, str]) -> None:
    rates = ", ".join(f"N={n}: {rate_for(args, n):g}/s" for n in args.subscribers)
    batch = "one message per write" if args.no_batch else "what is queued as one chunk"
    lines = [
        f"machine: {os.cpu_count()} CPUs; {split}",
        "servers: uvicorn --ws websockets-sansio --log-level warning --no-access-log (--loop auto: "
        f"{'uvloop' if find_spec('uvloop') else 'asyncio'}, --http auto: "
        f"{'httptools' if find_spec('httptools') else 'h11'}); plain: sse_baseline_server.py "
        f"(sse-starlette, writes {batch}); dialogue: dialogue_server.py GET /sse",
        f"library: dialogue_fastapi at {library['commit']}, newest file {library['newest_file']}",
        "load generator: this process, one event loop; N raw HTTP/1.1 SSE streams; one WebSocket "
        "publisher (joined, unsubscribed from the event)",
        f"reps={args.reps}; N={args.subscribers}; throughput {args.duration:g} s (window "
        f"{args.window}); latency {args.latency_duration:g} s at {rates}",
        *against_header(args.against),
    ]
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pins, split = setup_process()
    library = library_state()
    print_header(args, split, library)
    kinds = with_against([args.only] if args.only else KINDS, args.against, ["dialogue"])

    async def repetition(kind: str, _rep: int) -> dict[str, Any] | None:
        return await quietest(kind, lambda _n: run_one(kind, args, pins), args, pins)

    runs = run_all(alternate(kinds, args.reps, repetition))
    if runs is None:
        return 130
    med = medians_of(runs)
    verdict_text, found = verdicts(med, args.subscribers)
    print(f"\nmedians over the repetitions ({counts(runs)}):\n{table(med, COLUMNS)}\n\n{verdict_text}")
    print(f"CPU split: {split}")
    compared = against_report(med, args.against, kinds, args.noise_limit)
    end = library_state()
    warn_if_changed(library, end)
    write_json(args.json, args, cpu_split=split, library={"start": library, "end": end}, runs=runs,
               medians=med, targets=found, **compared)
    return 0 if med else 1

if __name__ == "__main__":
    sys.exit(main())
