"""Publishes of one connection in flight together (Redis broker): seqs in the order sent,
even when middleware takes different times; errors in between; later commands see them."""

from __future__ import annotations

import asyncio
import random
import secrets

import orjson
from redis_helpers import REDIS_URL, delete_prefix, need_redis

from dialogue_fastapi import Dialogue, RoomConfig
from dialogue_fastapi.brokers.redis import RedisBroker
from dialogue_fastapi.publish.pipeline import PublishContext
from dialogue_fastapi.testing import WsProbe


async def jitter(ctx: PublishContext, call_next):  # type: ignore[no-untyped-def]
    await asyncio.sleep(random.random() / 200)  # each publish waits a different time
    return await call_next(ctx)


async def test_a_connections_publishes_in_flight_keep_its_order(serve) -> None:
    await need_redis()
    prefix = f"dtest{secrets.token_hex(4)}:"
    broker = RedisBroker(REDIS_URL, prefix=prefix)
    dialogue = Dialogue(rooms={"r": RoomConfig(name="r")}, broker=broker, allow_anonymous=True,
                        middleware=[jitter])
    srv = await serve(dialogue)
    sender = await WsProbe.open(srv.ws_url("/ws"))
    watcher = await WsProbe.open(srv.ws_url("/ws"))
    try:
        await sender.request("join", room="r")
        await watcher.request("join", room="r")
        count = 60
        for n in range(count):  # sent back to back, no waiting for acks
            data = {"n": n} if n != 30 else "x" * 70_000  # one too large: refused in the middle
            await sender.ws.send(orjson.dumps({"op": "publish", "id": 1000 + n, "room": "r",
                                               "event": "e", "data": data}).decode())
        await sender.ws.send(orjson.dumps({"op": "ping", "id": 5000}).decode())
        replies: list[dict] = []
        async with asyncio.timeout(10):
            while not replies or replies[-1]["id"] != 5000:
                frame = await sender.frames.get()
                if "id" in frame:
                    replies.append(frame)
        # every publish was answered before the ping that followed them
        assert sorted(r["id"] for r in replies[:-1]) == [1000 + n for n in range(count)]
        acks = {r["id"] - 1000: r for r in replies[:-1]}
        assert acks[30]["error"]["code"] == "PAYLOAD_TOO_LARGE"
        seqs = [acks[n]["result"]["seq"] for n in range(count) if n != 30]
        assert seqs == list(range(1, count)), "seqs follow the order the frames were sent in"
        events = await watcher.events(count - 1, timeout=10)
        assert [e["data"]["n"] for e in events] == [n for n in range(count) if n != 30]
        assert [e["seq"] for e in events] == list(range(1, count))
    finally:
        await sender.close()
        await watcher.close()
        await delete_prefix(prefix)
