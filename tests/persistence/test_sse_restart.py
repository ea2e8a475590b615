"""SSE recovery across a real server restart with persistence: the cursor the stream gave
out before the restart replays, from the store, exactly what the client missed."""

from __future__ import annotations

import pytest
from conftest import Database
from helpers import authenticate
from helpers import serve_dialogue as serve

from dialogue_fastapi import Dialogue, RoomConfig, define_event
from dialogue_fastapi.testing import SseProbe

tick = define_event("tick", history=5)  # the hot history is smaller than what is missed

pytestmark = pytest.mark.timeout(30)


def make(db: Database) -> Dialogue:
    return Dialogue(rooms={"feed": RoomConfig(name="Feed", events=[tick])}, events=[tick],
                    authenticate=authenticate, persistence=db.store(), recovery_window=5)


async def test_an_sse_cursor_resumes_across_a_restart(db: Database) -> None:
    first = make(db)
    server = await serve(first)
    url = f"{server.http_url}/sse?room=feed&token=viewer"
    probe = await SseProbe.open(url)
    try:
        for n in range(1, 4):
            await first.trigger("feed", "tick", {"n": n})
        await probe.events(3)
        cursor = probe.last_id
        for n in range(4, 8):  # sent while the client is not reading any more
            await first.trigger("feed", "tick", {"n": n})
    finally:
        await probe.close()
    await server.stop()

    second = make(db)
    server = await serve(second, server.port)
    try:
        for n in range(8, 16):  # more than the hot window: these and 4..7 come from the store
            await second.trigger("feed", "tick", {"n": n})
        again = await SseProbe.open(url, headers={"Last-Event-ID": cursor or ""})
        try:
            replayed = await again.events(12)
            assert [e["seq"] for e in replayed] == list(range(4, 16))
            assert [e["data"]["n"] for e in replayed] == list(range(4, 16))
            await second.trigger("feed", "tick", {"n": 16})
            assert [e["seq"] for e in await again.events(1)] == [16]
        finally:
            await again.close()
    finally:
        await server.stop()
