"""dialogue-fastapi under test for ``fanout.py``: one anonymous room, WebSocket at ``/ws``.

Per-connection send-queue limits are left at the library's defaults on purpose
(the benchmark keeps every subscriber's backlog small, see ``fanout.py``).

``DIALOGUE_BENCH_METRICS=1``: with ``metrics=True`` (``fanout.py --metrics``).

Run alone: ``uvicorn dialogue_server:app --app-dir benchmarks --ws websockets-sansio``.
"""

import os

from fastapi import FastAPI

from dialogue_fastapi import Dialogue, RoomConfig

dialogue = Dialogue(rooms={"bench": RoomConfig(name="bench")}, allow_anonymous=True,
                    metrics=os.environ.get("DIALOGUE_BENCH_METRICS") == "1")
app = FastAPI()
app.include_router(dialogue.router)
