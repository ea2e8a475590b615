"""What every benchmark script does around its measurements.

The process set-up (this load generator pinned to the second CPU, a high fd
limit, uvloop), repetitions that alternate between the kinds measured (ABBA),
a repetition run again while other processes load the cores (the quietest run
kept), the event loop with Ctrl-C / SIGTERM ending cleanly, the medians, a
plain-text table and the ``--json`` file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import orjson
from _cpu import wait_for_quiet
from _report import medians, regression
from _runner import Pinning, noise
from _servers import REPO_DIR, ServerError, library_file, library_state

Run = dict[str, Any]
Runs = dict[str, list[Run]]


def fanout_parser(kinds: Sequence[str], rates: dict[int, float]) -> argparse.ArgumentParser:
    """The options fanout.py, sse.py and cluster.py share (N subscribers, two phases)."""
    p = argparse.ArgumentParser(description=(sys.modules["__main__"].__doc__ or "").split("\n\n")[0])
    add = p.add_argument
    default_rates = ",".join(f"{n}={r:g}" for n, r in rates.items())
    add("--quick", action="store_true", help="1 rep, N=100 only, 2 s phases")
    add("--reps", type=int, default=None, help="repetitions per kind (default 3; --quick 1)")
    add("--only", choices=kinds, help="run one kind only")
    add("--subscribers", default=None, help="comma-separated N (default 100,1000; --quick 100)")
    add("--rates", default=None, help=f"latency offered rate per N (default {default_rates})")
    add("--duration", type=float, default=None, help="throughput phase seconds (5; --quick 2)")
    add("--latency-duration", type=float, default=None, help="latency phase seconds (10; --quick 2)")
    add("--window", type=int, default=16, help="publishes in flight in the throughput phase")
    add("--max-lag", type=int, default=64, help="max average subscriber backlog (events)")
    add("--noise-limit", type=float, default=0.15, help="foreign load (cores) that voids a rep")
    add("--retries", type=int, default=2, help="reruns of a rep voided by foreign load")
    add("--json", type=Path, help="write raw runs, medians and targets here")
    return p


# --against DIR ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Against:
    """Another checkout of the library: its servers are the kinds ``<kind>@<commit>``."""

    repo: Path
    commit: str

    def kind(self, base: str) -> str:
        return f"{base}@{self.commit}"


def add_against(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--against", type=Path, metavar="DIR",
        help="also run the dialogue server(s) on the library of this checkout (e.g. a git worktree of "
             "the previous main), alternated with this tree's, and compare them (5%% tolerance)",
    )  # fmt: skip


def load_against(path: Path | None) -> Against | None:
    """``--against``'s checkout, once checked: a server started for it imports its library."""
    if path is None:
        return None
    repo = path.resolve()
    if not (repo / "dialogue_fastapi").is_dir():
        raise SystemExit(f"--against {path}: no dialogue_fastapi/ in it")
    if repo == REPO_DIR:
        raise SystemExit(f"--against {path}: that is this tree")
    found = library_file(repo)
    if not found.is_relative_to(repo):
        raise SystemExit(f"--against {path}: its servers would import dialogue_fastapi from {found}")
    commit = library_state(repo)["commit"]
    return Against(repo, repo.name if commit == "unknown" else commit)


def with_against(kinds: Sequence[str], against: Against | None, compared: Sequence[str]) -> list[str]:
    """``kinds``, each of ``compared`` followed by its ``--against`` kind."""
    out: list[str] = []
    for kind in kinds:
        out += [kind, against.kind(kind)] if against is not None and kind in compared else [kind]
    return out


def server_for(kind: str, against: Against | None) -> tuple[str, Path]:
    """The kind a server runs (``dialogue`` for ``dialogue@f7a39f0``) and the checkout it imports."""
    base, _, commit = kind.partition("@")
    return base, (against.repo if against is not None and commit else REPO_DIR)


def against_report(
    med: dict[str, dict[str, float]], against: Against | None, kinds: Sequence[str], noise_limit: float,
    metrics: Sequence[str] | None = None, titles: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Print the comparison of each kind run both ways (``_report.regression``); the ``--json``
    fields (none without ``--against``). ``titles``: a row prefix per kind."""
    if against is None:
        return {}
    compared = [k for k in kinds if against.kind(k) in kinds]
    text, found = regression(med, [(k, against.kind(k)) for k in compared], metrics,
                             [titles(k) + ": " for k in compared] if titles else None)
    print(f"\nthis tree against {against.commit} ({against.repo}), medians over the repetitions:\n{text}")
    noisy = sorted(k for c in compared for k in (c, against.kind(c))
                   if max([v for m, v in med.get(k, {}).items() if m.startswith("foreign_load")] + [0.0])
                   > noise_limit)
    if noisy:
        print(f"NOTE: foreign load above {noise_limit:g} cores in the medians of {', '.join(noisy)}: "
              "the machine was busy, a verdict may be noise")
    return {"against": {"repo": str(against.repo), "commit": against.commit, "rows": found}}


def against_header(against: Against | None) -> list[str]:
    """The header's line on ``--against`` (none without it)."""
    if against is None:
        return []
    state = library_state(against.repo)
    return [f"against: {against.repo} (kinds @{against.commit}): dialogue_fastapi at {state['commit']}, "
            f"newest file {state['newest_file']}; server modules from {Path(__file__).parent}"]


def fanout_args(p: argparse.ArgumentParser, argv: list[str] | None,
                rates: dict[int, float]) -> argparse.Namespace:
    """Parse, then fill the defaults that depend on ``--quick`` and ``--rates``."""
    a = p.parse_args(argv)
    a.reps = a.reps or (1 if a.quick else 3)
    a.subscribers = [int(x) for x in (a.subscribers or ("100" if a.quick else "100,1000")).split(",")]
    given, a.rates = a.rates or "", dict(rates)
    for item in filter(None, given.split(",")):
        n, r = item.split("=")
        a.rates[int(n)] = float(r)
    a.duration = a.duration or (2.0 if a.quick else 5.0)
    a.latency_duration = a.latency_duration or (2.0 if a.quick else 10.0)
    return a


def setup_process() -> tuple[Pinning, str]:
    """Pin this process to the second CPU and raise the fd limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return Pinning(None, None), f"only CPU(s) {cpus}: server and load generator share them"
    os.sched_setaffinity(0, {cpus[1]})
    return Pinning(cpus[0], cpus[1]), f"server on CPU {cpus[0]}, load generator on CPU {cpus[1]}"


def new_loop() -> asyncio.AbstractEventLoop:
    if find_spec("uvloop") is None:
        return asyncio.new_event_loop()
    import uvloop

    return uvloop.new_event_loop()


async def quietest(
    kind: str, attempt: Callable[[int], Awaitable[Run]], args: argparse.Namespace, pins: Pinning,
    foreign: Callable[[Run], float] = noise,
) -> Run | None:
    """One repetition: ``attempt(n)`` again (up to ``args.retries`` times, keeping the
    quietest run) while other processes took more than ``args.noise_limit`` cores."""
    best: Run | None = None
    for n in range(1 + args.retries):
        if pins.server is not None and pins.client is not None:
            load = await wait_for_quiet({pins.server, pins.client}, args.noise_limit, max_wait=30)
            if load >= args.noise_limit:
                print(f"    cores still {load:.0%} busy with other processes; measuring anyway", flush=True)
        try:
            run = await attempt(n)
        except ServerError:
            raise
        except Exception as exc:  # a phase timed out or a connection failed: report, go on
            print(f"    {kind} repetition failed: {exc!r}", flush=True)
            return best
        if best is None or foreign(run) < foreign(best):
            best = run
        if foreign(run) <= args.noise_limit:
            break
        if n < args.retries:
            print(f"    foreign load {foreign(run):.0%} of a core > {args.noise_limit:.0%}: again",
                  flush=True)
    return best


async def alternate(
    kinds: Sequence[str], reps: int, repetition: Callable[[str, int], Awaitable[Run | None]],
    title: Callable[[str], str] = str,
) -> Runs:
    """``repetition(kind, rep)`` for every kind, ``reps`` times, in ABBA order; a kind whose
    server does not start is left out from then on. SIGTERM ends it like Ctrl-C."""
    main_task = asyncio.current_task()
    assert main_task is not None
    # like Ctrl-C under asyncio.Runner: cancel, so every finally (killing the servers) runs
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    runs: Runs = {k: [] for k in kinds}
    failed: set[str] = set()
    for rep in range(reps):
        for kind in kinds if rep % 2 == 0 else list(kinds)[::-1]:
            if kind in failed:
                continue
            print(f"rep {rep + 1}/{reps} {title(kind)}:", flush=True)
            t0 = time.monotonic()
            try:
                run = await repetition(kind, rep)
                runs[kind].extend([run] if run is not None else [])
            except ServerError as exc:
                print(f"    {kind} did not start, skipped from now on:\n{exc}", flush=True)
                failed.add(kind)
            print(f"    ({time.monotonic() - t0:.0f} s)", flush=True)
    return runs


def run_all(main: Coroutine[Any, Any, Runs]) -> Runs | None:
    """Run the measurements on a fresh (uvloop) event loop; None if interrupted."""
    try:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            return runner.run(main)
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted; servers stopped", file=sys.stderr)
        return None


def medians_of(runs: Runs) -> dict[str, dict[str, float]]:
    """Per kind, the median of each figure (raw entries, named ``_...``, left out)."""
    public = {k: [{m: v for m, v in r.items() if not m.startswith("_")} for r in rs]
              for k, rs in runs.items()}
    return {k: medians(rs) for k, rs in public.items() if rs}


def counts(runs: Runs, name: Callable[[str], str] = str) -> str:
    return ", ".join(f"{name(k)}: {len(rs)}" for k, rs in runs.items())


def write_json(path: Path | None, args: argparse.Namespace, **fields: Any) -> None:
    """``--json``: the arguments and ``fields`` (runs, medians, ...), if a path was given."""
    if path is None:
        return
    out = {"args": vars(args) | {"json": str(path)}, **fields}
    path.write_bytes(orjson.dumps(out, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def warn_if_changed(start: dict[str, str], end: dict[str, str]) -> None:
    """Each server imports the library when it starts: say so if it changed during the run."""
    if end != start:
        print(f"WARNING: dialogue_fastapi changed during the run (now {end}): "
              "the repetitions did not all measure the same code")
