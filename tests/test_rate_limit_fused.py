"""Rate limits checked inside the Redis broker's publish (``brokers/redis_limits.py``): the
limit's storage is the broker's own Redis, so the check and the count ride in the publish
script. The budget is exact across two nodes, a refusal spends nothing in any limit, the
counters are the ``limits`` library's (its own path and ``reset()`` see the same budgets),
a publish that middleware drops or refuses still counts, and MONITOR shows that no limit
key is touched outside the publish script."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis_helpers import REDIS_URL, delete_prefix, fresh_redis_broker, need_redis, redis_client
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Identity, RateLimit, Reject, RoomConfig
from dialogue_fastapi.brokers.base import LimitRefused, StoredRooms
from dialogue_fastapi.brokers.memory import MemoryBroker
from dialogue_fastapi.brokers.redis import RedisBroker
from dialogue_fastapi.brokers.redis_limits import same_redis
from dialogue_fastapi.core.errors import RateLimited
from dialogue_fastapi.core.types import EventMessage
from dialogue_fastapi.limits.events import EventLimiter, Sender
from dialogue_fastapi.rooms.registry import Room
from dialogue_fastapi.testing import WsProbe
from dialogue_fastapi.testing.broker_contract import RecordingSink


def authenticate(conn: HTTPConnection) -> Identity:
    return Identity(conn.query_params["token"])


@pytest.fixture
async def prefixes() -> AsyncIterator[tuple[str, str]]:
    """(broker prefix, limits prefix), both deleted afterwards."""
    await need_redis()
    tag = secrets.token_hex(4)
    broker, limits = f"dtest{tag}:", f"dtest{tag}rl"
    yield broker, limits
    await delete_prefix(broker)
    await delete_prefix(limits)


def node(prefixes: tuple[str, str], limit: RateLimit | None = None, **settings: Any) -> Dialogue:
    broker_prefix, limits_prefix = prefixes
    rate = (limit or RateLimit(default="3/minute")).model_copy(
        update={"storage": REDIS_URL, "prefix": limits_prefix})
    rooms = settings.pop("rooms", None) or {"chat": RoomConfig(name="Chat")}
    return Dialogue(rooms=rooms, authenticate=authenticate, rate_limit=rate,
                    broker=RedisBroker(REDIS_URL, prefix=broker_prefix), **settings)


async def member(srv: Any, user: str, room: str = "chat") -> WsProbe:
    probe = await WsProbe.open(srv.ws_url("/ws") + f"?token={user}")
    await probe.request("join", room=room)
    return probe


async def publish(probe: WsProbe, room: str = "chat", event: str = "m", data: Any = 1) -> str:
    reply = await probe.reply("publish", room=room, event=event, data=data)
    return "ok" if "result" in reply else reply["error"]["code"]


def counter(limits_prefix: str, scope: str, user: str, text: str) -> str:
    """The ``limits`` library's current-window key of a sliding-window budget."""
    amount, per = text.split("/")
    return f"{limits_prefix}:{{LIMITER/{scope}/u:{user}/{amount}/1/{per}}}"


async def count(key: str) -> int:
    async with redis_client() as client:
        return int(await client.get(key) or 0)


@asynccontextmanager
async def on_the_library(limit: str, prefix: str) -> AsyncIterator[EventLimiter]:
    """An ``EventLimiter`` on the same budgets, not fused (the ``limits`` library's own path)."""
    limiter = EventLimiter(RateLimit(default=limit, storage=REDIS_URL, prefix=prefix))
    try:
        yield limiter
    finally:
        await limiter._storage.bridge.storage.aclose()  # type: ignore[attr-defined]


@asynccontextmanager
async def monitored(marker: str) -> AsyncIterator[Callable[[], Any]]:
    """MONITOR the test Redis; yields ``seen()``: awaits every command clients sent so far
    that mentions ``marker`` (a sentinel command marks the end; a script's own calls are
    not counted)."""
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    commands: list[str] = []
    sentinel = f"{marker}:sentinel:{secrets.token_hex(4)}"
    ended = asyncio.Event()
    async with client.monitor() as monitor:
        async def listen() -> None:
            while True:
                found = await monitor.next_command()
                command = found["command"]
                if sentinel in command:
                    ended.set()
                elif marker in command and found.get("client_type") != "lua":  # sent by a client
                    commands.append(command)

        task = asyncio.create_task(listen())

        async def seen() -> list[str]:
            async with redis_client() as other:
                await other.get(sentinel)
            await asyncio.wait_for(ended.wait(), 10)
            return commands

        try:
            yield seen
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    await client.aclose()


async def test_the_budget_is_exact_across_two_nodes_in_one_round_trip(serve, prefixes) -> None:
    broker_prefix, limits_prefix = prefixes
    nodes = [await serve(node(prefixes)) for _ in range(2)]
    on_a, on_b = await member(nodes[0], "dave"), await member(nodes[1], "dave")
    other = await member(nodes[1], "erin")
    try:
        async with monitored(limits_prefix) as seen:
            outcomes = [await publish(on_a if n % 2 == 0 else on_b) for n in range(6)]
            touched = await seen()
        assert outcomes == ["ok"] * 3 + ["RATE_LIMITED"] * 3
        assert await publish(other) == "ok"  # another user: a budget of its own
        # every command that touched a limit key was the room's publish script: one each
        room_seq = f"{broker_prefix}room:4:chat:seq"
        assert len(touched) == 6
        assert all(c.startswith("EVALSHA ") and room_seq in c for c in touched), touched
    finally:
        for probe in (on_a, on_b, other):
            await probe.close()


async def test_a_refusal_spends_no_budget_in_any_limit(serve, prefixes) -> None:
    _, rl = prefixes
    limit = RateLimit(default="10/minute", rooms={"chat": "3/minute"}, events={"typing": "1/minute"})
    srv = await serve(node(prefixes, limit))
    alice = await member(srv, "alice")
    try:
        assert await publish(alice, event="typing") == "ok"
        for _ in range(3):
            reply = await alice.reply("publish", room="chat", event="typing", data=1)
            assert reply["error"]["code"] == "RATE_LIMITED" and reply["error"]["limit"] == "1/minute"
            assert "(this event)" in reply["error"]["message"]
        assert await count(counter(rl, "all", "alice", "10/minute")) == 1
        assert await count(counter(rl, "room:chat", "alice", "3/minute")) == 1
        assert [await publish(alice) for _ in range(3)] == ["ok", "ok", "RATE_LIMITED"]
        assert await count(counter(rl, "all", "alice", "10/minute")) == 3
        assert await count(counter(rl, "event:typing", "alice", "1/minute")) == 1
    finally:
        await alice.close()


async def test_retry_after_is_what_the_limits_library_says(serve, prefixes) -> None:
    _, rl = prefixes
    limit = RateLimit(default="2 per 30 seconds")
    srv = await serve(node(prefixes, limit))
    alice = await member(srv, "alice")
    try:
        assert [await publish(alice) for _ in range(2)] == ["ok", "ok"]
        refused = (await alice.reply("publish", room="chat", event="m", data=1))["error"]
        async with on_the_library("2 per 30 seconds", rl) as library:
            item = library._item("2 per 30 seconds")
            stats = await library._limiter.get_window_stats(item, "all", "u:alice")
        expected = stats.reset_time - time.time()
        assert 0 < refused["retry_after"] <= 30
        assert abs(refused["retry_after"] - expected) < 0.5
        assert refused["message"] == (f"over the limit of 2 per 30 seconds (every publish); "
                                      f"retry in {refused['retry_after']:g} s")
    finally:
        await alice.close()


async def test_the_library_path_and_reset_share_the_fused_budgets(serve, prefixes) -> None:
    """A node still on ``limits`` itself (a rolling upgrade, or a limiter of a test) counts
    in the same budget, and ``EventLimiter.reset()`` clears the fused counters."""
    _, rl = prefixes
    srv = await serve(node(prefixes))
    alice = await member(srv, "alice")
    room = Room("chat", RoomConfig(name="Chat"))
    try:
        async with on_the_library("3/minute", rl) as library:
            assert [await publish(alice) for _ in range(2)] == ["ok", "ok"]
            await library.check(room, "m", Sender("alice", None, None))  # the third unit
            assert await publish(alice) == "RATE_LIMITED"
            with pytest.raises(RateLimited):  # and the library sees the fused counts
                await library.check(room, "m", Sender("alice", None, None))
            await library.reset()
            assert await publish(alice) == "ok"
    finally:
        await alice.close()


async def test_a_publish_middleware_drops_or_refuses_still_counts(serve, prefixes) -> None:
    async def gate(ctx, call_next):  # type: ignore[no-untyped-def]
        if ctx.message.data == "drop":
            ctx.drop()
            return None
        if ctx.message.data == "reject":
            raise Reject("rejected by the test")
        return await call_next(ctx)

    srv = await serve(node(prefixes, middleware=[gate]))
    alice = await member(srv, "alice")
    try:
        dropped = await alice.reply("publish", room="chat", event="m", data="drop")
        assert dropped["result"]["dropped"] is True
        assert await publish(alice, data="reject") == "BLOCKED"
        assert await publish(alice) == "ok"  # the third unit of 3/minute
        # over the limit, RATE_LIMITED comes first, whatever the middleware would have said
        assert await publish(alice, data="drop") == "RATE_LIMITED"
        assert await publish(alice, data="reject") == "RATE_LIMITED"
        assert await publish(alice) == "RATE_LIMITED"
    finally:
        await alice.close()


async def test_the_server_is_never_limited_on_the_fused_path(serve, prefixes) -> None:
    dialogue = node(prefixes, RateLimit(default="1/minute"))
    srv = await serve(dialogue)
    alice = await member(srv, "alice")
    try:
        for n in range(3):
            await dialogue.trigger("chat", "m", {"n": n})
        assert [await publish(alice) for _ in range(2)] == ["ok", "RATE_LIMITED"]
    finally:
        await alice.close()


def test_which_storage_is_the_brokers_own_redis() -> None:
    broker = "redis://127.0.0.1:6379/15"
    assert same_redis(broker, "redis://127.0.0.1:6379/15")
    assert same_redis(broker, "async+redis://127.0.0.1/15?socket_timeout=1")  # default port
    assert same_redis("redis://h/0", "redis://h")  # db 0 by default
    assert same_redis("redis://h/3", "redis://h/0?db=3")  # ?db= wins, as in redis-py
    assert same_redis("redis://:one@h/0", "redis://:two@h/0")  # the password is not compared
    assert not same_redis(broker, "redis://127.0.0.1:6379/14")  # another database
    assert not same_redis(broker, "redis://127.0.0.1:6380/15")
    assert not same_redis(broker, "redis://localhost:6379/15")  # names compared as written
    assert not same_redis(broker, "rediss://127.0.0.1:6379/15")
    assert not same_redis("redis://alice@h/0", "redis://bob@h/0")  # another ACL user
    assert same_redis("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2&timeout=3")
    assert not same_redis("unix:///run/redis.sock", "unix:///run/other.sock")
    assert not same_redis(broker, "memory://")
    assert not same_redis("redis+cluster://127.0.0.1:7000", "redis://127.0.0.1:7000/0")


def test_only_sliding_windows_in_the_brokers_own_redis_are_fused() -> None:
    redis = RedisBroker(REDIS_URL)
    assert EventLimiter(RateLimit(default="1/second", storage=REDIS_URL)).fuse_with(redis)
    moving = RateLimit(default="1/second", storage=REDIS_URL, strategy="moving-window")
    assert not EventLimiter(moving).fuse_with(redis)  # stays on the limits library's path
    elsewhere = REDIS_URL.rsplit("/", 1)[0] + "/9"
    assert not EventLimiter(RateLimit(default="1/second", storage=elsewhere)).fuse_with(redis)
    assert not EventLimiter(RateLimit(default="1/second", storage=REDIS_URL)).fuse_with(MemoryBroker())


async def test_the_broker_refuses_without_publishing_and_a_restored_room_counts_once() -> None:
    """At the broker: over a limit ``submit`` raises ``LimitRefused`` and the room's seq does
    not move; a room Redis has no epoch for (persistence on) is restored and published once
    more without the limits, so the publish is counted once."""
    async with fresh_redis_broker() as broker:
        limiter = EventLimiter(RateLimit(default="2/minute", storage=REDIS_URL,
                                         prefix=f"{broker.prefix}rl"))
        assert limiter.fuse_with(broker)
        room, alice = Room("lobby", RoomConfig(name="Lobby")), Sender("alice", None, None)

        async def position_of(name: str) -> None:
            return None  # the store has never seen the room

        async def read_after(name: str, after: int, limit: int) -> list[EventMessage]:
            return []

        broker.use_store(StoredRooms(position_of, read_after))
        sink = RecordingSink()
        await broker.start(sink.on_event, sink.on_control)
        try:
            def message(n: int) -> EventMessage:
                return EventMessage(room="lobby", event="e", data={"n": n}, from_="alice")

            checks = [limiter.fused_check(room, "e", alice) for _ in range(3)]
            assert all(c is not None for c in checks)
            first = await broker.submit(message(1), 10, 0, checks[0])  # restored, then published
            assert first.message.seq == 1
            assert await count(counter(f"{broker.prefix}rl", "all", "alice", "2/minute")) == 1
            assert (await broker.submit(message(2), 10, 0, checks[1])).message.seq == 2
            with pytest.raises(LimitRefused) as refused:
                await broker.submit(message(3), 10, 0, checks[2])
            assert refused.value.index == 0 and 0 < refused.value.retry_after <= 60
            assert (await broker.position("lobby")).seq == 2  # nothing published
            assert (await broker.submit(message(4), 10, 0)).message.seq == 3  # not limited
        finally:
            await broker.stop()
