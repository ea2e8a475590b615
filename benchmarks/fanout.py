"""Fan-out benchmark: dialogue-fastapi against a plain Starlette broadcast ceiling.

    python benchmarks/fanout.py [--quick] [--reps 3] [--only baseline|dialogue] [--json out.json]
                                [--against DIR] [--metrics]

Each server runs as its own uvicorn subprocess (``--ws websockets-sansio``)
pinned to CPU 0; this process, the load generator (one asyncio loop, the raw
``websockets`` client, orjson), is pinned to CPU 1. The two servers alternate
(ABBA order) for ``--reps`` repetitions and medians are printed, with the
ratios dialogue/ceiling and the targets. Per server and repetition:

1. a fresh server: warm-up, then server RSS before/after ``--idle`` idle
   connections that joined room "bench" (KiB per connection);
2. a fresh server, for each N in ``--subscribers``: N subscribers and one
   publisher join "bench"; throughput (publish with ``--window`` in flight
   for ``--duration`` s; delivered = events received by subscribers / wall
   time; server CPU per delivered message from /proc/<pid>/stat), then
   publish-to-delivery latency at a fixed offered rate (``--rates``).

Reading the figures: "load-gen CPU utilisation" near 100% means the load
generator, not the server, limited a throughput figure (that is why
subscribers read raw frames after the join; ``--reader websockets`` keeps
``websockets``' ``recv()`` and is client-bound). "foreign load" is CPU time
other processes took on the two pinned cores; a repetition with more than
``--noise-limit`` of it is run again (``--retries``).

``--against DIR`` (another checkout of the library, e.g. a git worktree of the
previous main): the dialogue server also runs on DIR's library, as the kind
``dialogue@<commit>`` alternated with this tree's, and a second table gives
both medians per row, the ratio current/against and the verdict (throughput at
least 0.95x, latency, CPU per message and RSS at most 1.05x).

``--metrics``: the dialogue server also runs with ``metrics=True`` (the env variable
``DIALOGUE_BENCH_METRICS=1``, read by ``dialogue_server.py``) as the kind
``dialogue+metrics``, alternated with ``dialogue``; a table gives both medians and the
ratio metrics on/off with the same verdicts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from importlib.util import find_spec
from typing import Any

from _report import regression, table, targets
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
    with_against,
    write_json,
)
from _runner import rate_for, run_one

KINDS = ("baseline", "dialogue")
METRICS_KIND, METRICS_ENV = "dialogue+metrics", "DIALOGUE_BENCH_METRICS"
# Offered rates for the latency phase: 20-30k deliveries/s, 35-55% of the server's
# core for either server. A frame sent alone costs the server 1.5-2.5x the CPU of
# one sent in a busy batch, so the throughput figures (~100-125k/s) overstate the
# headroom; the brief's "200/s at N=1000" would be 200k deliveries/s.
DEFAULT_RATES = {100: 300.0, 1000: 20.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = fanout_parser(KINDS, DEFAULT_RATES)
    add = p.add_argument
    add("--idle", type=int, default=None, help="idle connections for RSS (5000; --quick 1000)")
    add("--reader", choices=("raw", "websockets"), default="raw", help="subscribers' receive path")
    add("--metrics", action="store_true",
        help=f"also run dialogue with metrics=True as the kind {METRICS_KIND} (ratio on/off)")
    add_against(p)
    a = fanout_args(p, argv, DEFAULT_RATES)
    a.idle = a.idle or (1000 if a.quick else 5000)
    a.against = load_against(a.against)
    return a


def print_header(args: argparse.Namespace, split: str) -> None:
    rates = ", ".join(f"N={n}: {rate_for(args, n):g}/s" for n in args.subscribers)
    reader = "raw frames after the join" if args.reader == "raw" else "with websockets recv()"
    lines = [
        f"machine: {os.cpu_count()} CPUs; {split}",
        "servers: uvicorn --ws websockets-sansio --log-level warning --no-access-log (--loop auto: "
        f"{'uvloop' if find_spec('uvloop') else 'asyncio'})",
        f"load generator: this process, one event loop; websockets client for handshake, join and "
        f"publishing; subscribers read {reader}",
        f"reps={args.reps}; N={args.subscribers}; throughput {args.duration:g} s (window "
        f"{args.window}); latency {args.latency_duration:g} s at {rates}; idle={args.idle}",
    ]
    print("\n".join(lines + against_header(args.against)), flush=True)


@contextlib.contextmanager
def metrics_env(on: bool) -> Iterator[None]:
    """The servers started inside see ``DIALOGUE_BENCH_METRICS=1`` when ``on``."""
    before = os.environ.pop(METRICS_ENV, None)
    if on:
        os.environ[METRICS_ENV] = "1"
    try:
        yield
    finally:
        os.environ.pop(METRICS_ENV, None)
        if before is not None:
            os.environ[METRICS_ENV] = before


def metrics_report(med: dict[str, dict[str, float]]) -> dict[str, Any]:
    """``--metrics``: dialogue+metrics against dialogue (metrics off), medians and verdicts."""
    text, found = regression(med, [(METRICS_KIND, "dialogue")])
    print(f"\nmetrics on ({METRICS_KIND}) against off (dialogue), medians over the repetitions "
          f"(the columns 'against'/'this tree' read off/on):\n{text}")
    return {"metrics_on_off": found}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pins, split = setup_process()
    print_header(args, split)
    kinds = with_against([args.only] if args.only else KINDS, args.against, ["dialogue"])
    if args.metrics and "dialogue" in kinds:
        kinds.insert(kinds.index("dialogue") + 1, METRICS_KIND)

    async def repetition(kind: str, _rep: int) -> dict[str, Any] | None:
        base, repo = server_for(kind.removesuffix("+metrics"), args.against)
        with metrics_env(kind == METRICS_KIND):
            return await quietest(kind, lambda _n: run_one(base, args, pins, repo, kind), args, pins)

    runs = run_all(alternate(kinds, args.reps, repetition))
    if runs is None:
        return 130
    med = medians_of(runs)
    print(f"\nmedians over the repetitions ({counts(runs, lambda k: 'ceiling' if k == 'baseline' else k)}):"
          f"\n{table(med)}\n\n{targets(med)}")
    compared = against_report(med, args.against, kinds, args.noise_limit)
    if METRICS_KIND in kinds:
        compared |= metrics_report(med)
    write_json(args.json, args, cpu_split=split, runs=runs, medians=med, **compared)
    return 0 if med else 1

if __name__ == "__main__":
    sys.exit(main())
