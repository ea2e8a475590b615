"""Push dispatch against a fake Web Push service that verifies VAPID and decrypts: who is
notified (offline members, not online ones), the grace period, collapsing, pruning, retries,
the direct ``dialogue.push`` and, with SQLite, a node killed before the grace period ended."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import authenticate, ws_as
from push.fakes.webpush import FakeWebPush, Reply, Subscription
from test_exit_signal import free_port, output_of, started

from dialogue_fastapi import (
    Dialogue,
    Notification,
    PushConfig,
    PushTemplate,
    RoomConfig,
    define_event,
)
from dialogue_fastapi.push.dispatch import PushDispatcher
from dialogue_fastapi.push.vapid import generate_vapid_key

TESTS = Path(__file__).resolve().parent
VAPID = generate_vapid_key()
MESSAGE = define_event("message")
TASK = define_event("task", push=PushTemplate(title="Task in {room_name}", body="{sender} opened {title}",
                                              url="/rooms/{room}"))


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    """Wait for a condition (sync or async), polling; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or check}")


@pytest.fixture
async def fake() -> AsyncIterator[FakeWebPush]:
    service = FakeWebPush()
    await service.start()
    yield service
    await service.stop()


def make(grace: float = 0.3, **push: Any) -> Dialogue:
    rooms = {"design": RoomConfig(name="Design", channels=["websocket", "webpush"],
                                  events=[MESSAGE, TASK]),
             "plain": RoomConfig(name="Plain"),
             "dm:{a}:{b}": RoomConfig(name="Direct", members=["a", "b"],
                                      channels=["websocket", "webpush"])}
    return Dialogue(rooms=rooms, authenticate=authenticate, push=PushConfig(
        vapid_private_key=VAPID, vapid_subject="mailto:ops@example.com", allow_http_endpoints=True,
        allow_private_endpoints=True, grace_period=grace, **push))


def dispatcher(dialogue: Dialogue) -> PushDispatcher:
    found = dialogue.runtime.push_dispatch
    assert found is not None
    found.delivery.backoff = 0.02  # fast retries, so a Retry-After that is ignored shows
    return found


async def register(dialogue: Dialogue, user: str, sub: Subscription, rooms: list[str]) -> str:
    assert dialogue.runtime.push is not None
    device = sub.device()
    reg, _ = await dialogue.runtime.push.registrations.save(user, "webpush", sub.endpoint, device.keys,
                                                            rooms, 10)
    return reg.id


async def settled(dialogue: Dialogue) -> None:
    """Every queued notification is processed (sent, cancelled or given up)."""
    d = dispatcher(dialogue)
    await until(lambda: d.stats()["queue_depth"] == 0, what="the intake queue to drain")
    await until(lambda: _empty(d), what="the outbox to empty")


async def _empty(d: PushDispatcher) -> bool:
    return await d.outbox.pending() == 0 and d.stats()["queue_depth"] == 0


async def test_offline_member_is_notified_and_online_member_is_not(serve, probe, fake) -> None:
    dialogue = make()
    srv = await serve(dialogue)
    alice, bob = fake.subscribe(), fake.subscribe()
    await register(dialogue, "alice", alice, ["design"])
    await register(dialogue, "bob", bob, ["design"])
    await register(dialogue, "carol", fake.subscribe(), ["design"])  # the sender: never notified
    bob_ws = await probe(ws_as(srv, "bob"))
    await bob_ws.request("join", room="design")
    carol = await probe(ws_as(srv, "carol"))
    await carol.request("join", room="design")
    await carol.request("publish", room="design", event="message", data={"text": "hello"})
    await until(lambda: fake.for_path(alice), what="alice's notification")
    await settled(dialogue)
    [got] = fake.for_path(alice)
    assert got.payload["title"] == "Design"
    assert got.payload["body"] == "carol: hello"
    assert got.payload["tag"] == "design" and got.topic == "design"
    assert got.claims["sub"] == "mailto:ops@example.com"
    assert fake.for_path(bob) == []
    assert len(fake.received) == 1  # not carol, the sender
    assert dispatcher(dialogue).counters.sent == 1


async def test_when_always_notifies_online_members_too(serve, probe, fake) -> None:
    dialogue = make(when="always")
    srv = await serve(dialogue)
    alice, bob, carol = fake.subscribe(), fake.subscribe(), fake.subscribe()
    for user, sub in (("alice", alice), ("bob", bob), ("carol", carol)):
        await register(dialogue, user, sub, ["design"])
    bob_ws = await probe(ws_as(srv, "bob"))
    await bob_ws.request("join", room="design")
    await dialogue.trigger("design", "message", {"text": "hello"}, from_="carol")
    await until(lambda: fake.for_path(alice) and fake.for_path(bob), what="both notifications")
    await settled(dialogue)
    assert [len(fake.for_path(s)) for s in (alice, bob, carol)] == [1, 1, 0]  # never the sender


async def test_template_and_family_members(serve, probe, fake) -> None:
    dialogue = make()
    await serve(dialogue)
    alice = fake.subscribe()
    await register(dialogue, "alice", alice, [])  # no rooms: a member of dm:alice:bob by its id
    await dialogue.trigger("dm:alice:bob", "message", {"text": "psst"}, from_="bob")
    await until(lambda: fake.for_path(alice), what="the direct message's notification")
    assert fake.for_path(alice)[0].payload["body"] == "bob: psst"
    assert fake.for_path(alice)[0].payload["title"] == "Direct"
    await register(dialogue, "alice", alice, ["design"])
    await dialogue.trigger("design", TASK, {"title": "fix #12"}, from_="bob")
    await until(lambda: len(fake.for_path(alice)) == 2, what="the task's notification")
    payload = fake.for_path(alice)[1].payload
    assert (payload["title"], payload["body"], payload["url"]) == (
        "Task in Design", "bob opened fix #12", "/rooms/design")
    await dialogue.trigger("plain", "message", {"text": "no push here"}, from_="bob")
    await settled(dialogue)
    assert len(fake.received) == 2


async def test_a_member_who_joins_within_the_grace_period_is_not_notified(serve, probe, fake) -> None:
    dialogue = make(grace=1.5)
    srv = await serve(dialogue)
    alice = fake.subscribe()
    await register(dialogue, "alice", alice, ["design"])
    d = dispatcher(dialogue)
    await dialogue.trigger("design", "message", {"text": "are you there?"}, from_="bob")
    await until(lambda: _pending(d), what="the notification to be queued")
    ws = await probe(ws_as(srv, "alice"))
    await ws.request("join", room="design")
    await settled(dialogue)
    assert fake.received == []
    assert d.counters.cancelled == 1 and d.counters.sent == 0


async def _pending(d: PushDispatcher) -> bool:
    return await d.outbox.pending() == 1


async def test_two_events_in_the_grace_period_collapse_into_one(serve, fake) -> None:
    dialogue = make(grace=1.0)
    await serve(dialogue)
    alice = fake.subscribe()
    await register(dialogue, "alice", alice, ["design"])
    await dialogue.trigger("design", "message", {"text": "first"}, from_="bob")
    await dialogue.trigger("design", "message", {"text": "second"}, from_="carol")
    await until(lambda: fake.for_path(alice), what="the notification")
    await settled(dialogue)
    [got] = fake.for_path(alice)
    assert got.payload["title"] == "2 new messages in Design"
    assert got.payload["body"] == "carol: second"
    assert got.payload["data"]["count"] == 2
    assert dispatcher(dialogue).counters.collapsed == 1


async def test_a_device_that_is_gone_is_pruned(serve, fake) -> None:
    dialogue = make(grace=0)
    await serve(dialogue)
    alice = fake.subscribe()
    fake.script(alice, always=Reply(410))
    await register(dialogue, "alice", alice, ["design"])
    await dialogue.trigger("design", "message", {"text": "hi"}, from_="bob")
    push = dialogue.runtime.push
    assert push is not None
    await until(lambda: _registered(dialogue, "alice", 0), what="the registration to be pruned")
    assert len(fake.for_path(alice)) == 1
    assert dispatcher(dialogue).counters.gone == 1


async def _registered(dialogue: Dialogue, user: str, count: int) -> bool:
    assert dialogue.runtime.push is not None
    return len(await dialogue.runtime.push.registrations.of_user(user)) == count


async def test_429_is_retried_after_retry_after(serve, fake) -> None:
    dialogue = make(grace=0)
    await serve(dialogue)
    alice = fake.subscribe()
    fake.script(alice, Reply(429, {"Retry-After": "1"}))
    await register(dialogue, "alice", alice, ["design"])
    d = dispatcher(dialogue)
    await dialogue.trigger("design", "message", {"text": "hi"}, from_="bob")
    await until(lambda: fake.for_path(alice), what="the first attempt")
    first = time.monotonic()
    await until(lambda: len(fake.for_path(alice)) == 2, what="the retry")
    assert time.monotonic() - first >= 0.95  # the backoff alone would be ~0.02 s
    assert [r.status for r in fake.for_path(alice)] == [429, 201]
    assert (d.counters.retried, d.counters.sent) == (1, 1)


async def test_500_is_retried_then_given_up_and_counted(serve, fake) -> None:
    dialogue = make(grace=0, max_attempts=3)
    await serve(dialogue)
    alice = fake.subscribe()
    fake.script(alice, always=Reply(500))
    await register(dialogue, "alice", alice, ["design"])
    d = dispatcher(dialogue)
    await dialogue.trigger("design", "message", {"text": "hi"}, from_="bob")
    await until(lambda: d.counters.gave_up == 1, what="giving up")
    await settled(dialogue)
    assert [r.status for r in fake.for_path(alice)] == [500, 500, 500]
    assert (d.counters.retried, d.counters.sent) == (2, 0)
    assert dialogue.runtime.push is not None
    [reg] = await dialogue.runtime.push.registrations.of_user("alice")
    assert reg.failures == 1


async def test_push_sends_directly(serve, fake) -> None:
    dialogue = make(grace=60)  # no grace period for a direct push
    await serve(dialogue)
    phone, laptop = fake.subscribe(), fake.subscribe()
    one = await register(dialogue, "alice", phone, [])
    two = await register(dialogue, "alice", laptop, [])
    outcomes = await dialogue.push("alice", Notification(title="Hi", body="direct", url="/x"))
    assert outcomes == {one: "delivered", two: "delivered"}
    assert fake.for_path(phone)[0].payload == {"title": "Hi", "body": "direct", "url": "/x"}
    assert len(fake.for_path(laptop)) == 1


async def test_the_device_rate_holds_a_notification_for_later(serve, fake) -> None:
    dialogue = make(grace=0, device_rate="1/2 second")
    await serve(dialogue)
    alice = fake.subscribe()
    await register(dialogue, "alice", alice, ["design"])
    assert (await dialogue.push("alice", Notification(title="first")))
    await dialogue.trigger("design", "message", {"text": "later"}, from_="bob")
    await until(lambda: fake.for_path(alice)[1:], what="the held notification")
    assert dispatcher(dialogue).counters.rate_limited >= 1
    assert fake.for_path(alice)[1].payload["body"] == "bob: later"


# a node killed before the grace period ended ------------------------------------------------
def run_node(port: int, db: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PUSH_NODE_DB": db, "PUSH_NODE_VAPID": VAPID, "PUSH_NODE_GRACE": "3"}
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "push_node_app:app", "--app-dir", str(TESTS), "--port",
         str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def test_a_killed_node_delivers_once_after_restart(tmp_path: Path, fake, probe) -> None:
    from sqlalchemy import func, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from dialogue_fastapi.stores.sql import SqlStore

    db = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    store = SqlStore(db)
    await store.start()
    alice = fake.subscribe()
    await store.push_registrations().save("alice", "webpush", alice.endpoint, alice.device().keys,
                                          ["design"], 10)
    outbox = store.tables.push_outbox
    await store.stop()
    engine = create_async_engine(db)

    async def rows() -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(outbox))).scalar_one())

    port = free_port()
    node = run_node(port, db)
    try:
        await started(port, node)
        bob = await probe(f"ws://127.0.0.1:{port}/ws?token=bob")
        await bob.request("join", room="design")
        await bob.request("publish", room="design", event="message", data={"text": "while down"})
        await until(lambda: rows(), what="the outbox row")
        node.send_signal(signal.SIGKILL)
        node.wait(5)
        output_of(node)  # closes its pipe
        assert fake.received == []  # killed within the grace period
        port = free_port()
        node = run_node(port, db)
        await started(port, node)
        await until(lambda: fake.for_path(alice), what="the notification after restart")
        await until(lambda: _none(rows), what="the outbox to empty")
        assert len(fake.for_path(alice)) == 1
        assert fake.for_path(alice)[0].payload["body"] == "bob: while down"
    finally:
        output = output_of(node)
        await engine.dispose()
    assert "Traceback" not in output, output


async def _none(rows: Callable[[], Awaitable[int]]) -> bool:
    return await rows() == 0


async def test_push_sends_are_metrics_by_provider_and_outcome(serve, fake) -> None:
    from metrics_helpers import scrape, value

    rooms = {"design": RoomConfig(name="Design", channels=["websocket", "webpush"])}
    dialogue = Dialogue(rooms=rooms, authenticate=authenticate, metrics=True, push=PushConfig(
        vapid_private_key=VAPID, vapid_subject="mailto:ops@example.com", allow_http_endpoints=True,
        allow_private_endpoints=True, grace_period=0, max_attempts=2))
    srv = await serve(dialogue)
    dispatcher(dialogue)  # fast retries
    ok, gone, busy = fake.subscribe(), fake.subscribe(), fake.subscribe()
    fake.script(gone, always=Reply(410))
    fake.script(busy, Reply(503))  # retried once, then delivered
    for user, sub in (("alice", ok), ("bob", gone), ("dan", busy)):
        await register(dialogue, user, sub, ["design"])
    await dialogue.trigger("design", "message", {"text": "hi"}, from_="carol")
    await until(lambda: len(fake.for_path(busy)) == 2, what="the retried send")
    await settled(dialogue)
    samples = await scrape(srv.http_url + "/metrics")
    assert value(samples, "dialogue_push_sends_total", provider="webpush", outcome="delivered") == 2
    assert value(samples, "dialogue_push_sends_total", provider="webpush", outcome="gone") == 1
    assert value(samples, "dialogue_push_retries_total", provider="webpush") == 1
    assert value(samples, "dialogue_push_queue_depth") == 0
    assert value(samples, "dialogue_push_in_flight") == 0


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_the_configured_web_push_transport_delivers(serve, fake, transport: str) -> None:
    dialogue = make(grace=0, webpush_transport=transport)
    await serve(dialogue)
    alice = fake.subscribe()
    await register(dialogue, "alice", alice, ["design"])
    await dialogue.trigger("design", "message", {"text": "hi"}, from_="bob")
    await until(lambda: fake.for_path(alice), what="the notification")
    assert fake.for_path(alice)[0].payload["body"] == "bob: hi"
    assert dialogue.runtime.push is not None
    sender = dialogue.runtime.push.senders["webpush"]
    assert type(sender._transport).__name__.lower().startswith("_" + transport)  # type: ignore[attr-defined]
