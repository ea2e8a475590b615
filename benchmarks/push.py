"""Push benchmark: Web Push sends per second from one process, and what push costs a room's fan-out.

    python benchmarks/push.py [--quick] [--only sends|fanout] [--json out.json]
                              [--send-duration 5] [--send-reps 3] [--subscriptions 200]
                              [--transport aiohttp|httpx] [--sample N]
                              [fan-out options of fanout.py: --reps, --subscribers, ...]

**sends**: this process (one uvloop event loop, pinned to CPU 1) runs one
``WebPushSender`` with ``c`` sends in flight, round-robin over
``--subscriptions`` subscriptions of the fake Web Push service of the tests
(``push_service.py``: verifies the VAPID JWT and decrypts every payload), which runs in
another process pinned to CPU 0. Every send is a whole send: payload built and fitted,
encrypted for the subscription (pywebpush, aes128gcm, a new ephemeral key per message),
VAPID header (py_vapid), POST over the sender's transport (aiohttp or httpx), answer
classified. ``--sample N`` runs the fake in its sampling mode (``push_service.py``:
VAPID verified once per distinct header, one payload in N decrypted): the full fake
costs ~0.6 ms of CPU per push, as much as the aiohttp sender, so its core may set the
rate.
Configurations (``--transport`` keeps one transport's rows):

- ``aiohttp pool=16 c=16``: the defaults (aiohttp, HTTP/1.1, 16 connections, 16 sends
  in flight as the dispatcher's ``concurrency``, the VAPID header reused per push
  service for 10 minutes); ``httpx h1 pool=16 c=16``: the same on httpx;
- ``sign-each``: a VAPID token signed for every send (``vapid_reuse=0``);
- ``pool=4 c=4``, ``pool=4 c=16``, ``pool=16 c=64``, ``pool=64 c=64``: pool size and
  sends in flight;
- ``(hypercorn)``: the same fake under Hypercorn, over HTTP/1.1 and (httpx) over HTTP/2
  (prior knowledge on plain TCP: real push services speak HTTP/2 over TLS, which
  ``http2=True`` negotiates; the fake has no TLS here), every send multiplexed on one
  connection. Skipped when Hypercorn is not installed.

Per configuration: sends/s (delivered, each one checked by the service), this
process's CPU per send, the service's CPU utilisation (near 100%: the service, not
the sender, set the rate) and the capacity of the sender's core (1 / CPU per send).
The CPU split per send comes from the same process: the payload, the encryption,
the VAPID signature and the key check are timed alone (``time.process_time`` over
many calls); the HTTP client and event loop are what remains of the CPU per send
(given for the default configuration of each transport).

**fanout**: ``fanout.py``'s throughput and latency phases against the benchmark
dialogue server, plain (``dialogue``) and with ``DIALOGUE_BENCH_PUSH=1``
(``dialogue+push``: the room's channels include ``"webpush"``, a ``PushConfig`` with
a VAPID key, no registrations), alternated in one run; the ratio push/plain is
judged like ``fanout.py --against`` (throughput at least 0.95x).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

import httpx
from _cpu import ForeignLoad, wait_for_quiet
from _report import regression, table, text_table
from _reps import (
    alternate,
    counts,
    fanout_args,
    fanout_parser,
    medians_of,
    new_loop,
    quietest,
    setup_process,
    write_json,
)
from _runner import Pinning, run_one
from _servers import BENCH_DIR, REPO_DIR, ServerError, _pin_and_tie, _stop, free_port, proc_cpu_seconds

from dialogue_fastapi.push.base import Device, Notification, Outcome
from dialogue_fastapi.push.payload import fit
from dialogue_fastapi.push.vapid import VapidSigner, generate_vapid_key
from dialogue_fastapi.push.webpush import WebPushSender, _builder, _HttpxPoster, _valid_keys, encrypt

PUSH_KIND, PUSH_ENV = "dialogue+push", "DIALOGUE_BENCH_PUSH"
SUBJECT = "mailto:bench@example.com"
NOTIFICATION = Notification("New message in Design", "Ada: the review is at three, bring the drafts",
                            url="https://chat.example/r/design", tag="design",
                            data={"room": "design", "seq": 1234})


@dataclass(frozen=True)
class SendConfig:
    label: str
    transport: str = "aiohttp"
    server: str = "uvicorn"  # the fake's server
    http2: bool = False  # (the sender's default is True; over plain http it speaks HTTP/1.1)
    pool: int = 16
    reuse: float = 600.0
    concurrency: int = 16  # sends in flight (PushConfig.concurrency defaults to 16)


DEFAULTS = {"aiohttp": "aiohttp pool=16 c=16", "httpx": "httpx h1 pool=16 c=16"}
CONFIGS = [
    SendConfig("aiohttp pool=16 c=16"),
    SendConfig("aiohttp pool=16 c=16 sign-each", reuse=0.0),
    SendConfig("aiohttp pool=4 c=4", pool=4, concurrency=4),
    SendConfig("aiohttp pool=16 c=64", concurrency=64),
    SendConfig("aiohttp pool=64 c=64", pool=64, concurrency=64),
    SendConfig("aiohttp pool=16 c=16 (hypercorn)", server="hypercorn"),
    SendConfig("httpx h1 pool=16 c=16", "httpx"),
    SendConfig("httpx h1 pool=16 c=16 sign-each", "httpx", reuse=0.0),
    SendConfig("httpx h1 pool=4 c=4", "httpx", pool=4, concurrency=4),
    SendConfig("httpx h1 pool=4 c=16", "httpx", pool=4),
    SendConfig("httpx h1 pool=16 c=64", "httpx", concurrency=64),
    SendConfig("httpx h1 pool=64 c=64", "httpx", pool=64, concurrency=64),
    SendConfig("httpx h1 pool=16 c=16 (hypercorn)", "httpx", server="hypercorn"),
    SendConfig("httpx h2 1 conn c=16 (hypercorn)", "httpx", server="hypercorn", http2=True, pool=1),
    SendConfig("httpx h2 1 conn c=64 (hypercorn)", "httpx", server="hypercorn", http2=True, pool=1,
               concurrency=64),
]


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, argparse.Namespace]:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--only", choices=("sends", "fanout"))
    p.add_argument("--subscriptions", type=int, default=200)
    p.add_argument("--send-duration", type=float, default=None, help="seconds per configuration (5)")
    p.add_argument("--send-reps", type=int, default=None, help="repetitions of every configuration (3)")
    p.add_argument("--transport", choices=("aiohttp", "httpx"), help="only this transport's configurations")
    p.add_argument("--sample", type=int, default=1,
                   help="the fake decrypts one push in N and verifies each VAPID header once (1: all)")
    own, rest = p.parse_known_args(argv)
    fan = fanout_parser(("dialogue", PUSH_KIND), {100: 300.0, 1000: 20.0})
    fan.add_argument("--idle", type=int, default=None, help="idle connections for RSS (1000)")
    fa = fanout_args(fan, rest, {100: 300.0, 1000: 20.0})
    fa.idle = fa.idle or 1000
    fa.reader = "raw"
    own.send_duration = own.send_duration or (2.0 if fa.quick else 5.0)
    own.send_reps = own.send_reps or (1 if fa.quick else 3)
    own.json, own.quick, own.noise_limit = fa.json, fa.quick, fa.noise_limit
    return own, fa


# sends ------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def push_service(cfg: SendConfig, subscriptions: int, cpu: int | None,
                       sample: int = 1) -> AsyncIterator[tuple[int, int]]:
    """The fake Web Push service in its own process pinned to ``cpu``: (port, pid)."""
    port = free_port()
    cmd = [sys.executable, str(BENCH_DIR / "push_service.py"), str(port), str(subscriptions),
           "--server", cfg.server, "--sample", str(sample)]
    proc = subprocess.Popen(cmd, cwd=REPO_DIR, stdin=subprocess.DEVNULL, preexec_fn=_pin_and_tie(cpu))
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                if proc.poll() is not None:
                    raise ServerError(f"push_service.py exited ({proc.returncode})")
                try:
                    await client.get(f"http://127.0.0.1:{port}/bench/stats")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                raise ServerError("push_service.py did not start")
        yield port, proc.pid
    finally:
        _stop(proc)


def sender_for(cfg: SendConfig) -> WebPushSender:
    sender = WebPushSender(generate_vapid_key(), SUBJECT, max_connections=cfg.pool, vapid_reuse=cfg.reuse,
                           transport="httpx" if cfg.transport == "httpx" else "aiohttp", http2=cfg.http2)
    if cfg.http2:  # plain-TCP HTTP/2 needs prior knowledge (over TLS, http2=True negotiates it)
        assert isinstance(sender._transport, _HttpxPoster)
        sender._transport.client._client = httpx.AsyncClient(
            http1=False, http2=True, follow_redirects=False, timeout=10.0,
            limits=httpx.Limits(max_connections=cfg.pool, max_keepalive_connections=cfg.pool))
    return sender


async def drive(sender: WebPushSender, devices: list[Device], concurrency: int,
                seconds: float) -> tuple[int, dict[str, int]]:
    """``concurrency`` workers sending for ``seconds``: (delivered, other outcomes)."""
    cycle = itertools.cycle(devices)
    deadline = time.perf_counter() + seconds
    delivered = 0
    other: dict[str, int] = {}

    async def worker() -> None:
        nonlocal delivered
        while time.perf_counter() < deadline:
            result = await sender.send(next(cycle), NOTIFICATION)
            if result.outcome is Outcome.DELIVERED:
                delivered += 1
            else:
                key = f"{result.outcome.value} {result.status} {result.reason[:60]}"
                other[key] = other.get(key, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return delivered, other


async def measure_sends(cfg: SendConfig, a: argparse.Namespace, pins: Pinning) -> dict[str, Any]:
    async with push_service(cfg, a.subscriptions, pins.server, a.sample) as (port, pid):
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:
            devices = [Device(f"d{i}", f"u{i}", "webpush", d["endpoint"], d["keys"])
                       for i, d in enumerate((await client.get(f"{base}/bench/devices")).json())]
            sender = sender_for(cfg)
            try:
                await drive(sender, devices, cfg.concurrency, 1.0)  # warm-up: connections, imports
                await client.get(f"{base}/bench/stats")
                own = {pins.server: proc_cpu_seconds(pid), pins.client: time.process_time()} \
                    if pins.server is not None else {}
                load = ForeignLoad(own)
                cpu0, svc0, t0 = time.process_time(), proc_cpu_seconds(pid), time.perf_counter()
                delivered, other = await drive(sender, devices, cfg.concurrency, a.send_duration)
                wall = time.perf_counter() - t0
                cpu, svc = time.process_time() - cpu0, proc_cpu_seconds(pid) - svc0
                own = {pins.server: proc_cpu_seconds(pid), pins.client: time.process_time()} \
                    if pins.server is not None else {}
                foreign = max(load.cores(own).values(), default=0.0)
            finally:
                await sender.close()
            stats = (await client.get(f"{base}/bench/stats")).json()
    if stats["rejected"] or stats["received"] != delivered:
        raise RuntimeError(f"the service saw {stats} for {delivered} delivered sends ({other})")
    if a.sample > 1 and stats["decrypted"] < delivered // a.sample:
        raise RuntimeError(f"the service decrypted {stats['decrypted']} of {delivered} sends")
    return {"sends_per_s": delivered / wall, "sender_cpu_us_per_send": cpu / delivered * 1e6,
            "sender_cpu_util": cpu / wall, "service_cpu_util": svc / wall,
            "sender_capacity_per_s": delivered / cpu, "foreign_cores": foreign,
            "delivered": delivered, "not_delivered": sum(other.values())}


def cpu_split(devices: list[Device], rounds: int = 2000) -> dict[str, float]:
    """Microseconds of CPU per send for each phase, timed alone in this process."""
    device = devices[0]
    plaintext = fit(_builder(NOTIFICATION), NOTIFICATION.body, 3070)
    assert plaintext is not None
    signer = VapidSigner(generate_vapid_key(), SUBJECT, reuse=0)
    cached = VapidSigner(generate_vapid_key(), SUBJECT)
    phases = {
        "payload (build, fit, JSON)": lambda: fit(_builder(NOTIFICATION), NOTIFICATION.body, 3070),
        "key check (p256dh, auth)": lambda: _valid_keys(device),
        "encryption (pywebpush aes128gcm)": lambda: encrypt(device, plaintext),
        "VAPID sign (py_vapid ES256)": lambda: signer.authorization("http://127.0.0.1:1"),
        "VAPID header reused": lambda: cached.authorization("http://127.0.0.1:1"),
    }
    out = {}
    for name, call in phases.items():
        for _ in range(100):
            call()
        t = time.process_time()
        for _ in range(rounds):
            call()
        out[name] = (time.process_time() - t) / rounds * 1e6
    return out


async def run_sends(a: argparse.Namespace, pins: Pinning) -> dict[str, Any]:
    configs = [c for c in CONFIGS if (c.server != "hypercorn" or find_spec("hypercorn"))
               and a.transport in (None, c.transport)]
    runs: dict[str, list[dict[str, Any]]] = {c.label: [] for c in configs}
    for rep in range(a.send_reps):
        for cfg in configs if rep % 2 == 0 else configs[::-1]:
            if pins.server is not None and pins.client is not None:
                await wait_for_quiet({pins.server, pins.client}, a.noise_limit, max_wait=30)
            run = await measure_sends(cfg, a, pins)
            runs[cfg.label].append(run)
            print(f"  rep {rep + 1} {cfg.label}: {run['sends_per_s']:.0f} sends/s, "
                  f"{run['sender_cpu_us_per_send']:.0f} us CPU/send, sender core "
                  f"{run['sender_cpu_util']:.0%}, service core {run['service_cpu_util']:.0%}, "
                  f"foreign {run['foreign_cores']:.2f}", flush=True)
    med = medians_of(runs)
    async with push_service(configs[0], 1, pins.server) as (port, _), httpx.AsyncClient() as client:
        d = (await client.get(f"http://127.0.0.1:{port}/bench/devices")).json()[0]
    split = cpu_split([Device("d", "u", "webpush", d["endpoint"], d["keys"])])
    return {"runs": runs, "medians": med, "cpu_split_us": split}


def report_sends(out: dict[str, Any]) -> str:
    med, split = out["medians"], out["cpu_split_us"]
    rows = [("configuration", "sends/s", "sender CPU us/send", "sender core", "service core",
             "sender capacity/s")]
    for label, m in med.items():
        rows.append((label, f"{m['sends_per_s']:.0f}", f"{m['sender_cpu_us_per_send']:.0f}",
                     f"{m['sender_cpu_util']:.0%}", f"{m['service_cpu_util']:.0%}",
                     f"{m['sender_capacity_per_s']:.0f}"))
    defaults = {t: med[label] for t, label in DEFAULTS.items() if label in med}
    crypto = {k: v for k, v in split.items() if k != "VAPID sign (py_vapid ES256)"}
    srows = [("phase (default configuration)", *(f"{t} us CPU/send, share" for t in defaults))]
    totals = {t: m["sender_cpu_us_per_send"] for t, m in defaults.items()}
    srows += [(k, *(f"{v:.0f}  {v / total:.0%}" for total in totals.values())) for k, v in crypto.items()]
    rests = {t: total - sum(crypto.values()) for t, total in totals.items()}
    srows.append(("HTTP client + event loop + other",
                  *(f"{rests[t]:.0f}  {rests[t] / totals[t]:.0%}" for t in totals)))
    srows.append(("total", *(f"{total:.0f}" for total in totals.values())))
    srows.append(("(VAPID signed every send instead of reused)",
                  *(f"+{split['VAPID sign (py_vapid ES256)']:.0f}" for _ in totals)))
    return f"{text_table(rows)}\n\nCPU split per send:\n{text_table(srows)}"


# fan-out ----------------------------------------------------------------------------------
@contextlib.contextmanager
def push_env(on: bool) -> Iterator[None]:
    before = os.environ.pop(PUSH_ENV, None)
    if on:
        os.environ[PUSH_ENV] = "1"
    try:
        yield
    finally:
        os.environ.pop(PUSH_ENV, None)
        if before is not None:
            os.environ[PUSH_ENV] = before


async def run_fanout(fa: argparse.Namespace, pins: Pinning) -> dict[str, list[dict[str, Any]]]:
    async def repetition(kind: str, _rep: int) -> dict[str, Any] | None:
        with push_env(kind == PUSH_KIND):
            return await quietest(kind, lambda _n: run_one("dialogue", fa, pins, REPO_DIR, kind), fa, pins)

    kinds = [fa.only] if fa.only else ["dialogue", PUSH_KIND]
    return await alternate(kinds, fa.reps, repetition)


def main(argv: list[str] | None = None) -> int:
    a, fa = parse_args(argv)
    pins, split = setup_process()
    print(f"machine: {os.cpu_count()} CPUs; {split}; load generator: one "
          f"{'uvloop' if find_spec('uvloop') else 'asyncio'} event loop", flush=True)
    result: dict[str, Any] = {"cpu_split": split}
    with asyncio.Runner(loop_factory=new_loop) as runner:
        if a.only in (None, "sends"):
            fake = "every push verified and decrypted" if a.sample <= 1 else \
                f"VAPID verified once per header, 1 push in {a.sample} decrypted"
            print(f"\nWeb Push sends: {a.subscriptions} subscriptions, "
                  f"{a.send_duration:g} s x {a.send_reps} reps per configuration; fake: {fake}", flush=True)
            sends = runner.run(run_sends(a, pins))
            print(f"\nmedians:\n{report_sends(sends)}\n", flush=True)
            result["sends"] = sends
        if a.only in (None, "fanout"):
            print(f"\nfan-out, plain room (dialogue) vs push-enabled room ({PUSH_KIND}): reps={fa.reps}, "
                  f"N={fa.subscribers}", flush=True)
            runs = runner.run(run_fanout(fa, pins))
            med = medians_of(runs)
            text, found = regression(med, [(PUSH_KIND, "dialogue")])
            print(f"\nmedians ({counts(runs)}):\n{table(med)}\n\npush-enabled against plain "
                  f"(columns 'against'/'this tree' read plain/push):\n{text}", flush=True)
            result["fanout"] = {"runs": runs, "medians": med, "push_vs_plain": found}
    write_json(a.json, a, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
