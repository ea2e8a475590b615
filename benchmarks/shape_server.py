"""dialogue-fastapi under test for ``shape.py``: many small rooms declared as two room families.

- ``user:{id}``: one personal room per user, ``members=["id"]`` (only that user may join);
- ``group:{n:int}``: groups anyone may join (``shape.py`` puts 10 users in each).

Each connection authenticates as its own user: ``/ws?user=<id>`` (the benchmark's stand-in
for a token). The application's own publishes (the personal-room events) come through
``POST /_bench/trigger`` (``{"events": [{"room", "data"}]}``), which calls
``dialogue.trigger`` for each: what an application's business logic does, without REST's
per-room authorisation. ``GET /_bench/gc`` / ``POST /_bench/gc/reset``: the GC pauses seen
by ``_shape_bench.GcWatch``.

GC settings from the environment (``SHAPE_GC_FREEZE=1``, ``SHAPE_GC_THRESHOLDS=a,b,c``,
``SHAPE_GC_FREEZE_EVERY=seconds``: set it in the shell that runs ``shape.py``) go to
the library when ``DialogueConfig`` has ``gc_freeze`` / ``gc_thresholds``, else the app applies
them itself (thresholds at import, ``gc.freeze()`` once the library has started).
``SHAPE_REDIS_URL`` and ``SHAPE_REDIS_PREFIX`` put the node on a ``RedisBroker``
(``shape.py --nodes 2``). Library settings are the defaults otherwise.

Run alone: ``uvicorn shape_server:app --app-dir benchmarks --ws websockets-sansio``.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from _shape_bench import gc_settings, objects_report, trigger_events, watch
from fastapi import APIRouter, FastAPI, Request, Response
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, DialogueConfig, Identity, RoomConfig

FREEZE, THRESHOLDS = gc_settings()
FIELDS = set(getattr(DialogueConfig, "model_fields", {}))
settings: dict[str, Any] = {}
applied_by = "default"
if FREEZE or THRESHOLDS:
    library = (not FREEZE or "gc_freeze" in FIELDS) and (not THRESHOLDS or "gc_thresholds" in FIELDS)
    applied_by = "library" if library else "app"
    if library:
        settings |= {"gc_freeze": True} if FREEZE else {}
        settings |= {"gc_thresholds": THRESHOLDS} if THRESHOLDS else {}
    elif THRESHOLDS:
        gc.set_threshold(*THRESHOLDS)

if os.environ.get("SHAPE_GC_FREEZE_EVERY"):  # gc.freeze() every N seconds (the library's)
    settings["gc_freeze_every"] = float(os.environ["SHAPE_GC_FREEZE_EVERY"])
    applied_by = "library"

if os.environ.get("SHAPE_REDIS_URL"):
    from dialogue_fastapi.brokers.redis import RedisBroker

    settings["broker"] = RedisBroker(os.environ["SHAPE_REDIS_URL"], prefix=os.environ["SHAPE_REDIS_PREFIX"])


def authenticate(conn: HTTPConnection) -> Identity | None:
    user = conn.query_params.get("user")
    return Identity(user) if user else None


dialogue = Dialogue(
    rooms={
        "user:{id}": RoomConfig(name="Personal", members=["id"]),
        "group:{n:int}": RoomConfig(name="Group"),
    },
    authenticate=authenticate,
    **settings,
)


@asynccontextmanager
async def after_start(_: Any) -> AsyncIterator[None]:
    """Included after the library's router, so this runs once the library has started."""
    if FREEZE and applied_by == "app":
        gc.collect()
        gc.freeze()
    yield


bench = APIRouter(lifespan=after_start)


@bench.post("/_bench/trigger")
async def trigger(request: Request) -> Response:
    ok = errors = 0
    first = ""
    for room, data in trigger_events(orjson.loads(await request.body())):
        try:
            await dialogue.trigger(room, "message", data)
            ok += 1
        except Exception as exc:
            errors += 1
            first = first or f"{type(exc).__name__}: {exc}"[:200]
    return Response(orjson.dumps({"ok": ok, "errors": errors, "error": first}), media_type="application/json")


@bench.get("/_bench/gc")
async def gc_stats() -> Response:
    return Response(orjson.dumps(watch.snapshot(applied_by)), media_type="application/json")


@bench.get("/_bench/objects")
async def objects() -> Response:
    return Response(orjson.dumps(objects_report()), media_type="application/json")


@bench.post("/_bench/gc/reset")
async def gc_reset() -> Response:
    watch.reset()
    return Response(b"{}", media_type="application/json")


app = FastAPI()
app.include_router(dialogue.router)
app.include_router(bench)
