"""SSE across two nodes sharing the real Redis: an SSE stream counts in presence on every
node, and its cursor resumes on the other node with no gap and no duplicate."""

from __future__ import annotations

import secrets

from redis_helpers import REDIS_URL, delete_prefix, need_redis

from dialogue_fastapi import Dialogue, RoomConfig
from dialogue_fastapi.brokers.redis import RedisBroker
from dialogue_fastapi.testing import SseProbe


def node(prefix: str) -> Dialogue:
    return Dialogue(rooms={"feed": RoomConfig(name="Feed", max_size=2)}, allow_anonymous=True,
                    broker=RedisBroker(REDIS_URL, prefix=prefix))


async def test_an_sse_cursor_resumes_on_another_node(serve) -> None:
    await need_redis()
    prefix = f"dtest{secrets.token_hex(4)}:"
    a, b = node(prefix), node(prefix)
    srv_a, srv_b = await serve(a), await serve(b)
    try:
        probe = await SseProbe.open(srv_a.http_url + "/sse?room=feed")
        try:
            assert [m.client_id for m in await b.presence("feed")] == [probe.hello["client_id"]]
            for n in range(1, 4):
                await b.trigger("feed", "tick", {"n": n})
            assert [e["seq"] for e in await probe.events(3)] == [1, 2, 3]
            cursor = probe.last_id
        finally:
            await probe.close()
        for n in range(4, 7):
            await a.trigger("feed", "tick", {"n": n})
        again = await SseProbe.open(srv_b.http_url + "/sse?room=feed",
                                    headers={"Last-Event-ID": cursor or ""})
        try:
            assert [e["seq"] for e in await again.events(3)] == [4, 5, 6]
            await a.trigger("feed", "tick", {"n": 7})
            assert [e["data"]["n"] for e in await again.events(1)] == [7]
        finally:
            await again.close()
    finally:
        await delete_prefix(prefix)

