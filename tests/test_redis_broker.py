"""The Redis broker beyond the contract: gap repair and a subscriber that comes back."""

from __future__ import annotations

import asyncio
import re
import sys
import time

import orjson
import pytest
from redis_helpers import fresh_redis_broker, redis_client

from dialogue_fastapi.brokers.redis_scripts import RoomKeys
from dialogue_fastapi.core.types import EventMessage
from dialogue_fastapi.testing.broker_contract import RecordingSink


async def seqs_of(sink: RecordingSink, count: int) -> list[int]:
    return [m.seq for m in await sink.wait_events(count)]


def msg(room: str, n: int) -> EventMessage:
    return EventMessage(room=room, event="e", data={"n": n}, from_="u")


async def test_a_missed_pubsub_message_is_repaired_from_the_stream() -> None:
    async with fresh_redis_broker() as broker:
        sink = RecordingSink()
        await broker.start(sink.on_event, sink.on_control)
        try:
            await broker.subscribe("gap")
            await broker.publish(msg("gap", 1), 100)
            assert await seqs_of(sink, 1) == [1]
            # seq 2 reaches the stream, but its PUBLISH is lost
            keys = RoomKeys(broker.prefix, "gap")
            missed = msg("gap", 2)
            missed.ts = int(time.time() * 1000)
            async with redis_client() as raw:
                seq = await raw.incr(keys.seq)
                await raw.xadd(keys.stream, {"s": seq, "t": missed.ts, "b": orjson.dumps(missed.to_record()),
                                             "k": ""}, id=f"{seq}-0")
            await broker.publish(msg("gap", 3), 100)
            assert await seqs_of(sink, 3) == [1, 2, 3]
            assert [m.data["n"] for m in sink.events] == [1, 2, 3]
            await asyncio.sleep(0.1)
            assert len(sink.events) == 3
        finally:
            await broker.stop()


async def test_subscriber_comes_back_after_client_kill_and_delivers_what_it_missed() -> None:
    async with fresh_redis_broker() as broker:
        sink = RecordingSink()
        await broker.start(sink.on_event, sink.on_control)
        try:
            await broker.subscribe("kill")
            await broker.publish(msg("kill", 1), 100)
            assert await seqs_of(sink, 1) == [1]
            assert await broker.healthy()
            async with redis_client() as raw:
                # this node's subscriber only (other users of the server keep theirs)
                ours = [c["id"] for c in await raw.client_list(_type="pubsub")
                        if c.get("name") == f"dialogue-sub-{broker.node_id}"]
                assert len(ours) == 1
                killed = await raw.execute_command("CLIENT", "KILL", "TYPE", "pubsub", "ID", ours[0])
                assert killed == 1
                for n in range(2, 6):  # nobody of this node is listening now
                    await broker.publish(msg("kill", n), 100)
            assert await seqs_of(sink, 5) == [1, 2, 3, 4, 5]
            await broker.publish(msg("kill", 6), 100)
            assert await seqs_of(sink, 6) == [1, 2, 3, 4, 5, 6]
            await asyncio.sleep(0.2)
            assert [m.seq for m in sink.events] == [1, 2, 3, 4, 5, 6]  # once each
            async with asyncio.timeout(5):
                while not await broker.healthy():
                    await asyncio.sleep(0.05)
        finally:
            await broker.stop()


def test_redis_urls_build_a_redis_broker() -> None:
    from dialogue_fastapi.brokers import broker_from_config
    from dialogue_fastapi.brokers.redis import RedisBroker

    for url in ("redis://127.0.0.1:6379/0", "rediss://example:6380/1", "unix:///tmp/redis.sock"):
        broker = broker_from_config(url)
        assert isinstance(broker, RedisBroker) and broker.url == url


def test_a_redis_url_without_redis_py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from dialogue_fastapi.brokers import broker_from_config

    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=re.escape('pip install "dialogue-fastapi[redis]"')):
        broker_from_config("redis://127.0.0.1:6379/0")


async def test_drop_room_restarts_delivery_from_seq_one() -> None:
    async with fresh_redis_broker() as broker:
        sink = RecordingSink()
        await broker.start(sink.on_event, sink.on_control)
        try:
            await broker.subscribe("again")
            await broker.publish(msg("again", 1), 100)
            await broker.publish(msg("again", 2), 100)
            assert await seqs_of(sink, 2) == [1, 2]
            await broker.drop_room("again")
            await broker.publish(msg("again", 3), 100)
            assert await seqs_of(sink, 3) == [1, 2, 1]
        finally:
            await broker.stop()
