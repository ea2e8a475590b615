"""dialogue-fastapi under test for ``fanout.py``: one anonymous room, WebSocket at ``/ws``.

Per-connection send-queue limits are left at the library's defaults on purpose
(the benchmark keeps every subscriber's backlog small, see ``fanout.py``).

``BENCH_ROOMS=bench,bench-1,...``: these rooms instead of ``bench`` alone (``cluster.py --rooms``).

``DIALOGUE_BENCH_METRICS=1``: with ``metrics=True`` (``fanout.py --metrics``).

``DIALOGUE_BENCH_PUSH=1``: the room lists ``"webpush"`` in its channels and the app has a
``PushConfig`` (a VAPID key made at start-up) but no registrations (``push.py``'s fan-out
comparison: what push costs a room whose members registered no device).

Run alone: ``uvicorn dialogue_server:app --app-dir benchmarks --ws websockets-sansio``.
"""

import os

from fastapi import FastAPI

from dialogue_fastapi import Dialogue, PushConfig, RoomConfig

push = None
channels = ["websocket", "sse"]
if os.environ.get("DIALOGUE_BENCH_PUSH") == "1":
    from dialogue_fastapi.push.vapid import generate_vapid_key

    push = PushConfig(vapid_private_key=generate_vapid_key(), vapid_subject="mailto:bench@example.com")
    channels.append("webpush")

ROOMS = os.environ.get("BENCH_ROOMS", "bench").split(",")
dialogue = Dialogue(rooms={room: RoomConfig(name=room, channels=channels) for room in ROOMS},
                    allow_anonymous=True, metrics=os.environ.get("DIALOGUE_BENCH_METRICS") == "1", push=push)
app = FastAPI()
app.include_router(dialogue.router)
