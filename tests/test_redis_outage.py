"""Redis going away under a real server: UNAVAILABLE (never INTERNAL), /ready fails, and
everything comes back by itself when Redis is reachable again."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

import httpx
import pytest
from redis_helpers import REDIS_URL, PrivateRedis, delete_prefix, need_redis, need_redis_server
from tcp_proxy import TcpProxy

from dialogue_fastapi import Dialogue, RoomConfig
from dialogue_fastapi.brokers.redis import RedisBroker
from dialogue_fastapi.core.outages import is_outage
from dialogue_fastapi.core.types import EventMessage
from dialogue_fastapi.testing import ProbeError, WsProbe
from dialogue_fastapi.testing.broker_contract import RecordingSink


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout}s") from None


def test_outages_are_told_from_bugs() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import IntegrityError, OperationalError

    assert is_outage(RedisConnectionError("gone"))
    assert is_outage(RedisTimeoutError("slow"))
    assert is_outage(ConnectionRefusedError())
    assert is_outage(OperationalError("select", {}, Exception("down")))
    assert not is_outage(ResponseError("WRONGTYPE"))
    assert not is_outage(IntegrityError("insert", {}, Exception("dup")))
    assert not is_outage(ValueError("bug"))


async def test_with_redis_unreachable_requests_get_unavailable_and_recover(serve) -> None:
    await need_redis()
    host, port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    db = REDIS_URL.rsplit("/", 1)[1]
    prefix = f"dtest{secrets.token_hex(4)}:"
    broker = RedisBroker(f"redis://127.0.0.1:{proxy.port}/{db}", prefix=prefix, retries=1,
                         connect_wait=3)
    dialogue = Dialogue(rooms={"r": RoomConfig(name="r")}, broker=broker, allow_anonymous=True)
    srv = await serve(dialogue, "/d")
    http = httpx.AsyncClient(base_url=srv.http_url + "/d", timeout=10)
    probe = await WsProbe.open(srv.ws_url("/d/ws"))
    try:
        await probe.request("join", room="r")
        leaver = await WsProbe.open(srv.ws_url("/d/ws"))
        await leaver.request("join", room="r")
        assert (await http.get("/rooms/r/presence")).json()["count"] == 2
        assert (await http.get("/ready")).status_code == 200
        await proxy.cut()
        await leaver.close()  # Redis is gone for this node: its disconnect cannot reach Redis

        with pytest.raises(ProbeError) as refused:
            await probe.request("publish", room="r", event="e", data=1, timeout=10)
        assert refused.value.error["code"] == "UNAVAILABLE"
        await probe.request("leave", room="r")
        with pytest.raises(ProbeError) as join_refused:
            await probe.request("join", room="r", timeout=10)
        assert join_refused.value.error["code"] == "UNAVAILABLE"
        other = await WsProbe.open(srv.ws_url("/d/ws"))  # hello, then: come back later
        try:
            code, _ = await other.closed(timeout=10)
            assert code == 1013
        finally:
            await other.close()
        presence = await http.get("/rooms/r/presence")
        assert presence.status_code == 503
        assert presence.json()["error"]["code"] == "UNAVAILABLE"
        posted = await http.post("/rooms/r/events", json={"event": "e", "data": 2})
        assert (posted.status_code, posted.json()["error"]["code"]) == (503, "UNAVAILABLE")

        async def ready_is(status: int) -> bool:
            return (await http.get("/ready")).status_code == status

        await until(lambda: ready_is(503), 10, "/ready reports the dead subscriber")
        await proxy.start()  # Redis is back on the same port
        await until(lambda: ready_is(200), 15, "the node is ready again by itself")
        await probe.request("join", room="r")

        async def only_probe_present() -> bool:
            users = (await http.get("/rooms/r/presence")).json()["users"]
            return [u["client_id"] for u in users] == [probe.hello["client_id"]]

        await until(only_probe_present, 10, "presence rewritten without the one that left")
        ack = await probe.request("publish", room="r", event="e", data=3)
        event = await probe.next("event")
        assert (event["seq"], event["data"]) == (ack["seq"], 3)
    finally:
        await probe.close()
        await http.aclose()
        await proxy.cut()
        await delete_prefix(prefix)


async def test_a_hung_redis_fails_publishes_within_the_command_timeout(serve, tmp_path) -> None:
    need_redis_server()
    redis = PrivateRedis(tmp_path / "redis.log")
    await redis.start()
    broker = RedisBroker(redis.url, retries=1, command_timeout=0.5)
    dialogue = Dialogue(rooms={"r": RoomConfig(name="r")}, broker=broker, allow_anonymous=True)
    srv = await serve(dialogue)
    probe = await WsProbe.open(srv.ws_url("/ws"))
    try:
        await probe.request("join", room="r")
        redis.pause()  # SIGSTOP: connections stay open, nothing answers
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ProbeError) as refused:
            await probe.request("publish", room="r", event="e", data=1, timeout=10)
        took = loop.time() - started
        assert refused.value.error["code"] == "UNAVAILABLE"
        # two attempts of 0.5 s and a short backoff: it fails, it does not hang
        assert took < 3.0, f"UNAVAILABLE after {took:.1f}s"
        redis.resume()
        ack = await probe.request("publish", room="r", event="e", data=2)
        assert (await probe.next("event"))["seq"] == ack["seq"]
    finally:
        await probe.close()
        redis.kill()


class AnswerLosingProxy(TcpProxy):
    """Forwards to Redis; once armed, swallows the next answer and cuts that connection,
    as a network failure after Redis executed a command but before its reply arrived."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.armed = False
        self.lost = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def upstream() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if self.armed:
                    self.armed = False
                    self.lost += 1
                    writer.transport.abort()
                    up_writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        self._tasks.update(tasks)
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
            self._tasks.discard(task)
        writer.transport.abort()
        up_writer.transport.abort()


async def test_a_publish_whose_answer_was_lost_is_retried_without_publishing_twice() -> None:
    await need_redis()
    host, port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    proxy = AnswerLosingProxy(host, int(port))
    await proxy.start()
    db = REDIS_URL.rsplit("/", 1)[1]
    prefix = f"dtest{secrets.token_hex(4)}:"
    broker = RedisBroker(f"redis://127.0.0.1:{proxy.port}/{db}", prefix=prefix)
    sink = RecordingSink()
    await broker.start(sink.on_event, sink.on_control)
    try:
        await broker.subscribe("once")
        first = await broker.publish(EventMessage(room="once", event="e", data=1, from_="u"), 100)
        proxy.armed = True  # Redis runs the next publish; its answer never arrives
        second = await broker.publish(EventMessage(room="once", event="e", data=2, from_="u"), 100)
        assert proxy.lost == 1
        assert (first.message.seq, second.message.seq, second.duplicate) == (1, 2, False)
        assert await broker.read("once", 0) is not None
        assert [m.data for m in await broker.read("once", 0) or []] == [1, 2]  # not [1, 2, 2]
        assert (await broker.position("once")).seq == 2
    finally:
        await broker.stop()
        await proxy.cut()
        await delete_prefix(prefix)
