"""instances.py's server: one room family (``doc:{doc_id:int}``) with ``idle_ttl`` from
``BENCH_IDLE_TTL`` (seconds, default 1), no instance rate limit, and ``/instances``."""

from __future__ import annotations

import os

from fastapi import FastAPI

from dialogue_fastapi import Dialogue, RateLimit, RoomConfig

IDLE_TTL = float(os.environ.get("BENCH_IDLE_TTL", "1"))
dialogue = Dialogue(rooms={"doc:{doc_id:int}": RoomConfig(name="Document", idle_ttl=IDLE_TTL)},
                    allow_anonymous=True, rate_limit=RateLimit(instances=None))
app = FastAPI()
app.include_router(dialogue.router)


@app.get("/instances")
async def instances() -> dict[str, int]:
    live = dialogue.runtime.instances
    return {"held": len(live), "evicted": live.evicted}
