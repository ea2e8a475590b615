"""The live feed demo: a ticker fed by a server task and a long job's progress, over SSE.

Run from the repository root:  python examples/live_feed/app.py
then open the printed URL. The page is plain HTML and uses only the browser's
``EventSource`` (no client library): one stream carries both rooms. Updates are
kept in ``live_feed.db`` (SQLite, in the directory you run it from), so a page
left open across a server restart resumes from its cursor (``Last-Event-ID``)
and misses nothing; ``DIALOGUE_DATABASE_URL`` points it elsewhere. It needs the
``sqlite`` extra: ``pip install -e ".[sqlite]"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

from fastapi import FastAPI
from fastapi.responses import FileResponse
from pydantic import BaseModel

from dialogue_fastapi import Dialogue, Retention, RoomConfig, define_event

STATIC = Path(__file__).parent / "static"
TICK_SECONDS = 0.5
JOB_STEPS, JOB_STEP_SECONDS = 20, 0.2
BOOT = secrets.token_hex(3)  # this server process: shown with each price, to see a restart
SYMBOLS = {"ACME": 120.00, "GLOBX": 48.50, "INITECH": 12.30, "UMBRL": 230.00, "WAYNE": 87.00}
logger = logging.getLogger("live_feed")


class Price(BaseModel):
    symbol: str
    price: float
    change: float  # percent, from this symbol's previous price
    n: int  # the ticker's count: 1, 2, 3... continued across restarts
    boot: str  # the server process that published it


class Progress(BaseModel):
    job: str
    step: int
    of: int


class Done(BaseModel):
    job: str
    status: Literal["finished", "failed", "cancelled"]


price = define_event("price", Price, history=50, description="a made-up price tick")
progress = define_event("progress", Progress, history=50, description="a job's step k of n")
done = define_event("done", Done, history=50, description="a job ended: finished, failed, cancelled")

dialogue = Dialogue(
    rooms={
        "ticker": RoomConfig(name="Ticker", events=[price], channels=["sse"]),
        "jobs": RoomConfig(name="Jobs", events=[progress, done], channels=["sse", "websocket"]),
    },
    events=[price, progress, done],
    allow_anonymous=True,  # a public feed: anyone may read it
    persistence="sqlite+aiosqlite:///live_feed.db",  # cursors resume across restarts
    retention=Retention(max_events=20_000),  # the ticker writes 7,200 rows an hour
)


async def run_ticker() -> None:
    """Trigger a ``price`` in ``ticker`` every TICK_SECONDS, until cancelled."""
    position = await dialogue.position("ticker")
    n = position.seq  # continue the count where the last process stopped
    prices = dict(SYMBOLS)
    for message in await dialogue.history("ticker", price, limit=50):  # and from its prices
        prices[message.data["symbol"]] = message.data["price"]
    rng = random.Random()
    while True:
        await asyncio.sleep(TICK_SECONDS)
        symbol = rng.choice(sorted(prices))
        old = prices[symbol]
        new = round(max(1.0, old * (1 + rng.uniform(-0.012, 0.012))), 2)
        try:
            await dialogue.trigger("ticker", price, {
                "symbol": symbol, "price": new, "change": round((new - old) / old * 100, 2),
                "n": n + 1, "boot": BOOT,
            })
            prices[symbol] = new
            n += 1
        except Exception:  # the ticker keeps going; the count stays the room's seq
            logger.exception("publishing a price failed")
            with contextlib.suppress(Exception):
                n = (await dialogue.position("ticker")).seq


jobs: dict[str, asyncio.Task[None]] = {}


async def run_job(job_id: str, steps: int) -> None:
    """A long-running job that reports its progress in ``jobs``."""
    try:
        await dialogue.trigger("jobs", progress, {"job": job_id, "step": 0, "of": steps})
        for step in range(1, steps + 1):
            await asyncio.sleep(JOB_STEP_SECONDS)  # the real work goes here
            await dialogue.trigger("jobs", progress, {"job": job_id, "step": step, "of": steps})
        await dialogue.trigger("jobs", done, {"job": job_id, "status": "finished"})
    except Exception:
        logger.exception("job %s failed", job_id)
        with contextlib.suppress(Exception):
            await dialogue.trigger("jobs", done, {"job": job_id, "status": "failed"})
    finally:
        jobs.pop(job_id, None)


async def cancel_jobs() -> None:
    """On shutdown: stop the running jobs and say so in the room."""
    running = dict(jobs)
    for task in running.values():
        task.cancel()
    await asyncio.gather(*running.values(), return_exceptions=True)
    for job_id, task in running.items():
        if task.cancelled():  # not one that ended meanwhile
            await dialogue.trigger("jobs", done, {"job": job_id, "status": "cancelled"})


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    # This lifespan wraps the router's: start Dialogue here (starts are counted) so
    # the ticker never publishes before it has started, nor after it has stopped.
    await dialogue.start()
    ticker = asyncio.create_task(run_ticker())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await cancel_jobs()
        await dialogue.stop()  # last: every published update is written to the store


app = FastAPI(title="dialogue-fastapi live feed demo", lifespan=lifespan)
app.include_router(dialogue.router, prefix="/dialogue")


@app.post("/jobs", status_code=202)
async def start_job() -> dict[str, str | int]:
    """Start a job; its progress streams in the ``jobs`` room."""
    job_id = "job-" + secrets.token_hex(3)
    jobs[job_id] = asyncio.create_task(run_job(job_id, JOB_STEPS))
    return {"job": job_id, "of": JOB_STEPS}


@app.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html")


def main() -> None:
    import uvicorn

    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    print(f"\n  dialogue-fastapi live feed demo: open http://{host}:{port}/\n", flush=True)
    uvicorn.run(app, host=host, port=port, ws="websockets-sansio", ws_per_message_deflate=False,
                log_level="info", timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
