"""The app ``test_instance_memory.py`` runs in its own process (``uvicorn instances_app:app``):
one room family with a short ``idle_ttl``, and a route telling how many instances it holds."""

from __future__ import annotations

from fastapi import FastAPI

from dialogue_fastapi import Dialogue, RateLimit, RoomConfig

dialogue = Dialogue(rooms={"doc:{doc_id:int}": RoomConfig(name="Document", idle_ttl=0.2)},
                    allow_anonymous=True, rate_limit=RateLimit(instances=None))
app = FastAPI()
app.include_router(dialogue.router)


@app.get("/instances")
async def instances() -> dict[str, int]:
    live = dialogue.runtime.instances
    return {"held": len(live), "evicted": live.evicted}
