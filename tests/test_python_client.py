"""The Python client (``dialogue_fastapi.client``) against a real server.

Every test runs uvicorn on a free port (the ``serve`` fixture) and talks to it
with `DialogueClient`. The recovery tests stop and start the server on the same
port around the same ``Dialogue`` (the memory broker's state lives on), drop
the client's socket, or starve the client until the server closes it with 4009,
and check that the application's handler sees every event exactly once, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from helpers import Calls, authenticate
from net_helpers import wait_until
from pydantic import BaseModel
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Hooks, Identity, Reject, RoomConfig, define_event
from dialogue_fastapi.client import ClientRoom, DialogueClient, DialogueClientError
from dialogue_fastapi.testing import LiveServer

pytestmark = pytest.mark.timeout(15)


class Text(BaseModel):
    text: str


message = define_event("message", Text, history=100)
typing = define_event("typing")

FAST = {"backoff_initial": 0.01, "backoff_max": 0.1}  # reconnect at once in tests


def make_dialogue(*, hooks: Hooks | None = None, **settings: Any) -> Dialogue:
    rooms = {
        "chat": RoomConfig(name="Chat", events=[message, typing]),
        "feed": RoomConfig(name="Feed"),  # any event name, no schema
    }
    settings.setdefault("authenticate", authenticate)
    return Dialogue(rooms=rooms, hooks=hooks or Hooks(), **settings)


class Seen:
    """A handler that records what it receives and lets a test wait for it."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    def __call__(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        self._changed.set()

    @property
    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames]

    async def wait(self, count: int, timeout: float = 3.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` frames arrived."""
        async with asyncio.timeout(timeout):
            while len(self.frames) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.frames


class States:
    """Records a client's state changes."""

    def __init__(self, client: DialogueClient) -> None:
        self.seen: list[str] = []
        client.on_state(self.seen.append)

    async def wait(self, state: str, count: int = 1, timeout: float = 3.0) -> None:
        await wait_until(lambda: self.seen.count(state) >= count, timeout)


ClientFactory = Callable[..., Awaitable[DialogueClient]]


@pytest.fixture
async def clients(serve) -> AsyncIterator[ClientFactory]:
    """``client = await clients(srv, "alice", **options)``: connected, closed after the test.

    Depends on ``serve`` so that clients close before their servers stop.
    """
    opened: list[DialogueClient] = []

    async def open_client(srv: LiveServer, user: str, **options: Any) -> DialogueClient:
        client = DialogueClient(srv.ws_url(), token=user, **{**FAST, **options})
        opened.append(client)
        await client.connect()
        return client

    yield open_client
    for client in opened:
        await client.close()


def drop_socket(client: DialogueClient) -> None:
    """Cut the client's TCP connection as a network failure would (close code 1006).

    The client has no public API for this; it reaches into the live connection.
    """
    conn = client._conn
    assert conn is not None
    conn.ws.transport.abort()


async def collect(room: ClientRoom, count: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    async for msg in room:
        items.append(msg)
        if len(items) == count:
            break
    return items


# --- connecting -------------------------------------------------------------------------

async def test_connect_reads_hello(serve, clients):
    dialogue = make_dialogue(heartbeat=7)
    srv = await serve(dialogue)
    client = await clients(srv, "alice")
    assert client.state == "connected" and client.connected
    assert client.user_id == "alice"
    assert client.client_id is not None and client.client_id.startswith("c_")
    assert client.hello == {"op": "hello", "client_id": client.client_id, "user_id": "alice",
                            "protocol": 1, "heartbeat": 7}
    assert await dialogue.get_clients("alice") == [client.client_id]
    await client.close()
    assert client.state == "closed" and client.close_code == 1000
    async with asyncio.timeout(2):
        while await dialogue.get_clients("alice"):
            await asyncio.sleep(0.01)


async def test_async_with_connects_and_closes(serve):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    async with DialogueClient(srv.ws_url(), token="alice") as client:
        assert client.state == "connected"
        room = await client.join("chat")
    assert client.state == "closed"
    assert room.closed
    assert [msg async for msg in room] == []  # the iterator ends


@pytest.mark.parametrize("path", ["query", "header"])
async def test_token_reaches_authenticate_by_query_and_by_header(serve, path):
    seen: list[tuple[Any, ...]] = []

    def record(conn: HTTPConnection) -> None:
        seen.append((conn.query_params.getlist("token"), conn.query_params.get("v"),
                     conn.headers.get("authorization"), conn.headers.get("x-app")))

    def by_query(conn: HTTPConnection) -> Identity:
        record(conn)
        return Identity(conn.query_params["token"])

    def by_header(conn: HTTPConnection) -> Identity:
        record(conn)
        scheme, _, token = conn.headers["authorization"].partition(" ")
        if scheme != "Bearer":
            raise Reject("want a bearer token")
        return Identity(token)

    dialogue = make_dialogue(authenticate=by_query if path == "query" else by_header)
    srv = await serve(dialogue)
    url = srv.ws_url() + "?v=2&token=stale"  # token_in_query replaces a token in the URL
    headers = {"X-App": "1", "Authorization": "Basic stale"}  # the token replaces Authorization
    options = {"token_in_query": True} if path == "query" else {}
    async with DialogueClient(url, token="alice", headers=headers, **options) as client:
        assert client.user_id == "alice"
    in_url = ["alice"] if path == "query" else ["stale"]  # by default the URL stays as given
    assert seen == [(in_url, "2", "Bearer alice", "1")]


async def test_refused_connect_raises_unauthorized_with_4001(serve):
    def only_alice(conn: HTTPConnection) -> Identity:
        if conn.query_params.get("token") != "alice":
            raise Reject("unknown token")
        return Identity("alice")

    srv = await serve(make_dialogue(authenticate=only_alice))
    client = DialogueClient(srv.ws_url(), token="mallory", **FAST)
    states = States(client)
    with pytest.raises(DialogueClientError) as refused:
        await client.connect()
    assert refused.value.code == "UNAUTHORIZED"
    assert "unknown token" in refused.value.message
    assert client.close_code == 4001
    assert client.state == "closed"
    assert states.seen == ["connecting", "closed"]
    await asyncio.sleep(0.2)  # and it does not retry by itself
    assert states.seen == ["connecting", "closed"]


async def test_refused_origin_raises_forbidden_with_1008(serve):
    srv = await serve(make_dialogue())
    client = DialogueClient(srv.ws_url(), token="alice", headers={"Origin": "https://evil.example"})
    with pytest.raises(DialogueClientError) as refused:
        await client.connect()
    assert refused.value.code == "FORBIDDEN"
    assert client.close_code == 1008 and client.state == "closed"


async def test_heartbeat_keeps_an_idle_connection_open_and_silence_is_closed_4002(serve, clients):
    dialogue = make_dialogue(heartbeat=0.2)  # the server closes after 0.6 s of silence
    srv = await serve(dialogue)
    pinging = await clients(srv, "alice")  # pings every 0.2 s, as the hello says
    silent = await clients(srv, "bob", heartbeat=0)
    pinging_states, silent_states = States(pinging), States(silent)
    first_id = pinging.client_id
    await silent_states.wait("reconnecting", timeout=2)
    assert silent.close_code == 4002  # heartbeat timeout: the client reconnects
    await silent_states.wait("connected", timeout=2)
    await asyncio.sleep(0.5)
    assert pinging.client_id == first_id and pinging_states.seen == []


async def test_a_closed_client_can_connect_again(serve, clients):
    srv = await serve(make_dialogue())
    alice = await clients(srv, "alice")
    first = alice.client_id
    room = await alice.join("chat")
    await alice.close()
    await alice.connect()
    assert alice.state == "connected" and alice.client_id != first
    assert alice.joined == {} and room.closed  # rooms are not rejoined after close()
    assert (await alice.join("chat")) is not room


async def test_request_sends_any_command(serve, clients):
    srv = await serve(make_dialogue())
    alice = await clients(srv, "alice")
    assert await alice.request("ping") == {}
    assert {r["id"] for r in (await alice.request("rooms"))["rooms"]} == {"chat", "feed"}
    with pytest.raises(DialogueClientError) as unknown:
        await alice.request("no_such_op")
    assert unknown.value.code == "BAD_REQUEST"


# --- rooms, handlers, publish -----------------------------------------------------------

async def test_join_returns_a_client_room(serve, clients):
    srv = await serve(make_dialogue())
    alice = await clients(srv, "alice")
    room = await alice.join("chat")
    assert isinstance(room, ClientRoom)
    assert room.id == "chat" and not room.closed
    assert room.info["id"] == "chat" and room.info["name"] == "Chat" and room.info["size"] == 1
    assert room.subscriptions == "*"
    assert room.position["seq"] == 0 and isinstance(room.position["epoch"], str)
    assert await alice.join("chat") is room
    assert alice.room("chat") is room and alice.joined == {"chat": room}
    assert alice.room("feed") is None


async def test_on_handler_receives_events_from_another_client(serve, clients):
    srv = await serve(make_dialogue())
    alice, bob = await clients(srv, "alice"), await clients(srv, "bob")
    room = await alice.join("chat")
    seen, everything = Seen(), Seen()
    room.on("message", seen)
    room.on("*", everything)
    bobs = await bob.join("chat")
    await bobs.publish("message", {"text": "hi"})
    await bobs.publish("typing", {"on": True})
    await everything.wait(2)
    assert len(seen.frames) == 1
    msg = seen.frames[0]
    assert msg == {"op": "event", "room": "chat", "event": "message", "data": {"text": "hi"},
                   "from": "bob", "ts": msg["ts"], "seq": 1, "meta": {}}
    assert [f["event"] for f in everything.frames] == ["message", "typing"]


async def test_async_handlers_run_in_order(serve, clients):
    srv = await serve(make_dialogue())
    alice, bob = await clients(srv, "alice"), await clients(srv, "bob")
    room = await alice.join("feed")
    order: list[int] = []
    done = Seen()

    async def slow_first(msg: dict[str, Any]) -> None:
        if msg["seq"] == 1:
            await asyncio.sleep(0.05)
        order.append(msg["seq"])
        done(msg)

    room.on("tick", slow_first)
    bobs = await bob.join("feed")
    for i in range(5):
        await bobs.publish("tick", i)
    await done.wait(5)
    assert order == [1, 2, 3, 4, 5]


async def test_off_and_the_returned_remover_stop_delivery(serve, clients):
    srv = await serve(make_dialogue())
    alice, bob = await clients(srv, "alice"), await clients(srv, "bob")
    room = await alice.join("chat")
    by_off, by_remover, witness = Seen(), Seen(), Seen()
    room.on("message", by_off)
    remove = room.on("message", by_remover)
    room.on("*", witness)  # "*" handlers run after those of the event's name
    bobs = await bob.join("chat")
    await bobs.publish("message", {"text": "one"})
    await witness.wait(1)
    room.off("message", by_off)
    remove()
    await bobs.publish("message", {"text": "two"})
    await witness.wait(2)
    assert [f["seq"] for f in by_off.frames] == [1]
    assert [f["seq"] for f in by_remover.frames] == [1]
    remove()  # removing twice is harmless
    room.off("message", by_off)
    room.off("nothing-registered", by_off)


async def test_publish_returns_the_seq(serve, clients):
    srv = await serve(make_dialogue())
    alice, bob = await clients(srv, "alice"), await clients(srv, "bob")
    room = await alice.join("chat")
    seen = Seen()
    (await bob.join("chat")).on("message", seen)
    seqs = [await room.publish("message", {"text": str(i)}) for i in range(3)]
    assert seqs == [1, 2, 3]
    await seen.wait(3)
    assert seen.seqs == seqs
    meta_seq = await room.publish("message", {"text": "m"}, meta={"k": "v"})
    await seen.wait(4)
    assert meta_seq == 4 and seen.frames[3]["meta"] == {"k": "v"}


async def test_publish_with_an_idempotency_key_returns_the_original_seq(serve, clients):
    srv = await serve(make_dialogue())
    alice = await clients(srv, "alice")
    room = await alice.join("chat")
    first = await room.publish("message", {"text": "once"}, idempotency_key="k1")
    again = await room.publish("message", {"text": "once"}, idempotency_key="k1")
    assert first == again == 1
    assert [e["seq"] for e in await room.history()] == [1]


async def test_publish_of_an_event_dropped_by_middleware_is_not_an_error(serve, clients):
    async def drop_secrets(ctx, call_next):
        if ctx.message.event == "secret":
            ctx.drop()
            return None
        return await call_next(ctx)

    srv = await serve(make_dialogue(middleware=[drop_secrets]))
    alice = await clients(srv, "alice")
    room = await alice.join("feed")
    assert await room.publish("secret", 1) is None  # acked without a seq, nothing published
    assert await room.publish("plain", 2) == 1


async def test_async_iteration_yields_events_in_order(serve, clients):
    srv = await serve(make_dialogue())
    alice, bob = await clients(srv, "alice"), await clients(srv, "bob")
    room = await alice.join("feed")
    reader = asyncio.create_task(collect(room, 10))
    bobs = await bob.join("feed")
    for i in range(10):
        await bobs.publish("tick", {"i": i})
    items = await asyncio.wait_for(reader, 3)
    assert [m["seq"] for m in items] == list(range(1, 11))
    assert [m["data"]["i"] for m in items] == list(range(10))
    assert room.dropped == 0


async def test_join_with_history_delivers_it_first(serve, clients):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    for i in range(5):
        await dialogue.trigger("chat", message, {"text": str(i)})
    alice = await clients(srv, "alice")
    room = await alice.join("chat", history=3)
    seen = Seen()
    room.on("message", seen)
    await dialogue.trigger("chat", message, {"text": "live"})
    await seen.wait(4)
    assert seen.seqs == [3, 4, 5, 6]
    assert [m["seq"] for m in await collect(room, 4)] == [3, 4, 5, 6]


async def test_the_iterator_buffer_drops_the_oldest_when_full(serve, clients):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await clients(srv, "alice", queue_size=3)
    room = await alice.join("feed")
    witness = Seen()
    room.on("tick", witness)  # handlers still see everything
    for i in range(5):
        await dialogue.trigger("feed", "tick", i)
    await witness.wait(5)
    assert room.dropped == 2
    assert [m["seq"] for m in await collect(room, 3)] == [3, 4, 5]


async def test_a_failing_handler_is_logged_and_delivery_goes_on(serve, clients, caplog):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await clients(srv, "alice")
    room = await alice.join("feed")
    seen = Seen()

    def broken(msg: dict[str, Any]) -> None:
        if msg["seq"] == 1:
            raise RuntimeError("handler bug")

    room.on("tick", broken)
    room.on("tick", seen)
    with caplog.at_level("ERROR", logger="dialogue_fastapi.client"):
        await dialogue.trigger("feed", "tick", 1)
        await dialogue.trigger("feed", "tick", 2)
        await seen.wait(2)
    assert seen.seqs == [1, 2]
    assert any("handler bug" in (r.exc_text or str(r.exc_info)) for r in caplog.records)


# --- errors -----------------------------------------------------------------------------

async def test_validation_failed_carries_details(serve, clients):
    srv = await serve(make_dialogue())
    alice = await clients(srv, "alice")
    room = await alice.join("chat")
    with pytest.raises(DialogueClientError) as failed:
        await room.publish("message", {"text": 5})
    error = failed.value
    assert error.code == "VALIDATION_FAILED"
    assert "message" in error.message
    assert error.details == [{"loc": ["text"], "msg": error.details[0]["msg"], "type": "string_type"}]
    assert str(error).startswith("VALIDATION_FAILED: ")
    assert await room.publish("message", {"text": "fine"}) == 1  # the connection is still usable


async def test_not_in_room_and_room_not_found(serve, clients):
    srv = await serve(make_dialogue())
    alice = await clients(srv, "alice")
    with pytest.raises(DialogueClientError) as missing:
        await alice.join("no-such-room")
    assert missing.value.code == "ROOM_NOT_FOUND"
    assert alice.room("no-such-room") is None
    with pytest.raises(DialogueClientError) as outside:
        await alice.request("publish", room="chat", event="message", data={"text": "x"})
    assert outside.value.code == "NOT_IN_ROOM"
    room = await alice.join("chat")
    await room.leave()
    with pytest.raises(DialogueClientError) as left:
        await room.publish("message", {"text": "x"})
    assert left.value.code == "NOT_IN_ROOM"


async def test_event_not_allowed(serve, clients):
    srv = await serve(make_dialogue())
    alice = await clients(srv, "alice")
    room = await alice.join("chat")
    with pytest.raises(DialogueClientError) as refused:
        await room.publish("shout", {"text": "HI"})
    assert refused.value.code == "EVENT_NOT_ALLOWED"
    assert "shout" in refused.value.message
    with pytest.raises(DialogueClientError) as bad_subscription:
        await room.subscribe(["shout"])
    assert bad_subscription.value.code == "EVENT_NOT_ALLOWED"


async def test_join_denied_carries_the_reason(serve, clients):
    def members_only(identity: Identity, room_id: str) -> bool:
        if identity.user_id != "alice":
            raise Reject("members only")
        return True

    srv = await serve(make_dialogue(hooks=Hooks(before_join=members_only)))
    bob = await clients(srv, "bob")
    with pytest.raises(DialogueClientError) as denied:
        await bob.join("chat")
    assert denied.value.code == "JOIN_DENIED"
    assert denied.value.message == "members only"
    assert denied.value.extra == {"reason": "members only"}


async def test_no_reply_within_ack_timeout_raises_timeout(serve, clients):
    release = asyncio.Event()

    async def slow_before_join(identity: Identity, room_id: str) -> bool:
        await release.wait()
        return True

    srv = await serve(make_dialogue(hooks=Hooks(before_join=slow_before_join)))
    alice = await clients(srv, "alice", ack_timeout=0.2)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(DialogueClientError) as timed_out:
            await alice.join("chat")
        assert timed_out.value.code == "TIMEOUT"
        assert "join" in timed_out.value.message
        assert 0.15 < asyncio.get_running_loop().time() - started < 1.0
        assert alice.room("chat") is None
    finally:
        release.set()
    # the late reply is ignored; the connection still works
    assert alice.state == "connected"
    assert await alice.request("ping") == {}


# --- room operations --------------------------------------------------------------------

async def test_history(serve, clients):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await clients(srv, "alice")
    room = await alice.join("chat")
    seen = Seen()
    room.on("*", seen)
    for i in range(1, 6):
        await room.publish("message", {"text": str(i)})
    await room.publish("typing", {})
    await seen.wait(6)
    assert [e["seq"] for e in await room.history()] == [1, 2, 3, 4, 5]  # typing keeps no history
    assert [e["seq"] for e in await room.history(limit=2)] == [4, 5]
    assert [e["seq"] for e in await room.history(after=1, limit=2)] == [2, 3]
    assert [e["seq"] for e in await room.history(before=3)] == [1, 2]
    page = await room.history(event="message", limit=1)
    assert page == [{"op": "event", "room": "chat", "event": "message", "data": {"text": "5"},
                     "from": "alice", "ts": page[0]["ts"], "seq": 5, "meta": {}}]
    assert len(seen.frames) == 6  # history is not delivered to handlers


async def test_presence(serve, clients):
    srv = await serve(make_dialogue())
    alice, bob = await clients(srv, "alice"), await clients(srv, "bob")
    room = await alice.join("chat")
    await bob.join("chat")
    here = await room.presence()
    assert here["count"] == 2
    assert sorted(here["users"], key=lambda u: u["user_id"]) == [
        {"user_id": "alice", "client_id": alice.client_id},
        {"user_id": "bob", "client_id": bob.client_id},
    ]


async def test_presence_events(serve, clients):
    dialogue = make_dialogue()
    await dialogue.create_room("lobby", RoomConfig(name="Lobby", presence_events=True))
    srv = await serve(dialogue)
    alice, bob = await clients(srv, "alice"), await clients(srv, "bob")
    notices = Seen()
    alice.on_presence(notices)
    await alice.join("lobby")
    bobs = await bob.join("lobby")
    await bobs.leave()
    await notices.wait(2)
    assert notices.frames == [
        {"op": "presence_join", "room": "lobby", "user_id": "bob", "client_id": bob.client_id},
        {"op": "presence_leave", "room": "lobby", "user_id": "bob", "client_id": bob.client_id},
    ]


async def test_subscribe_and_unsubscribe(serve, clients):
    srv = await serve(make_dialogue())
    alice, bob = await clients(srv, "alice"), await clients(srv, "bob")
    room = await alice.join("chat", subscriptions=["message"])
    assert room.subscriptions == ["message"]
    seen = Seen()
    room.on("*", seen)
    bobs = await bob.join("chat")
    await bobs.publish("typing", {})  # seq 1: not subscribed
    await bobs.publish("message", {"text": "a"})  # seq 2
    await seen.wait(1)
    assert await room.subscribe(["typing"]) == ["message", "typing"]
    assert room.subscriptions == ["message", "typing"]
    await bobs.publish("typing", {})  # seq 3
    await seen.wait(2)
    assert await room.unsubscribe(["message"]) == ["typing"]
    await bobs.publish("message", {"text": "b"})  # seq 4: no longer subscribed
    await bobs.publish("typing", {})  # seq 5
    await seen.wait(3)
    assert seen.seqs == [2, 3, 5]
    assert await room.subscribe("*") == "*"


async def test_leave_ends_iteration_and_delivery(serve, clients):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice, bob = await clients(srv, "alice"), await clients(srv, "bob")
    room = await alice.join("chat")
    seen = Seen()
    room.on("*", seen)
    reader = asyncio.create_task(collect(room, 100))
    bobs = await bob.join("chat")
    witness = Seen()
    bobs.on("*", witness)
    await bobs.publish("message", {"text": "before"})
    await seen.wait(1)
    await room.leave()
    assert room.closed and alice.room("chat") is None and alice.joined == {}
    assert [m["seq"] for m in await asyncio.wait_for(reader, 2)] == [1]
    await bobs.publish("message", {"text": "after"})
    await witness.wait(2)
    await asyncio.sleep(0.05)
    assert seen.seqs == [1]
    assert [m.user_id for m in await dialogue.presence("chat")] == ["bob"]
    await room.leave()  # leaving twice is harmless
    rejoined = await alice.join("chat")
    assert rejoined is not room and not rejoined.closed


async def test_rooms_create_delete_and_their_notices(serve, clients):
    calls = Calls()
    dialogue = make_dialogue(events=[message],
                             hooks=Hooks(on_room_created=calls.sync("created")))
    srv = await serve(dialogue)
    alice, bob = await clients(srv, "alice"), await clients(srv, "bob")
    created, deleted = Seen(), Seen()
    bob.on_room_created(created)
    bob.on_room_deleted(deleted)
    info = await alice.create_room("side", "Side", description="d", max_size=5, events=["message"])
    assert info["id"] == "side" and info["name"] == "Side" and info["description"] == "d"
    assert info["max_size"] == 5 and info["events"] == ["message"] and info["created_by"] == "alice"
    await created.wait(1)
    assert created.frames == [{"op": "room_created", "room": info}]
    assert calls.named("created") == [("side", "alice")]
    assert {r["id"] for r in await bob.rooms()} == {"chat", "feed", "side"}
    with pytest.raises(DialogueClientError) as taken:
        await bob.create_room("side", "Again")
    assert taken.value.code == "ROOM_EXISTS"
    side = await bob.join("side")
    with pytest.raises(DialogueClientError) as not_yours:
        await bob.delete_room("side")
    assert not_yours.value.code == "FORBIDDEN"
    reader = asyncio.create_task(collect(side, 100))
    await alice.delete_room("side")
    await deleted.wait(1)
    assert deleted.frames == [{"op": "room_deleted", "room": "side"}]
    assert side.closed and bob.room("side") is None  # the room ended before the notice
    assert await asyncio.wait_for(reader, 2) == []
    assert {r["id"] for r in await bob.rooms()} == {"chat", "feed"}


async def test_on_direct_receives_send_to_user(serve, clients):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice, bob = await clients(srv, "alice"), await clients(srv, "bob")
    to_alice, to_bob = Seen(), Seen()
    alice.on_direct(to_alice)
    bob.on_direct(to_bob)
    await dialogue.send_to_user("alice", "nudge", {"n": 1})
    await dialogue.send_to_user("bob", "nudge", {"n": 2}, from_="alice")
    await to_alice.wait(1)
    await to_bob.wait(1)
    assert to_alice.frames == [{"op": "direct", "event": "nudge", "data": {"n": 1}, "from": "server",
                                "ts": to_alice.frames[0]["ts"]}]
    assert [(f["data"], f["from"]) for f in to_bob.frames] == [({"n": 2}, "alice")]


async def test_disconnect_user_closes_with_4004_without_reconnecting(serve, clients):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await clients(srv, "alice")
    states = States(alice)
    room = await alice.join("chat")
    await dialogue.disconnect_user("alice", reason="bye")
    await asyncio.wait_for(alice.wait_closed(), 3)
    assert alice.state == "closed" and alice.close_code == 4004
    assert "bye" in alice.close_reason
    assert room.closed and [m async for m in room] == []
    await asyncio.sleep(0.3)  # ten times the reconnect backoff cap: it stays away
    assert states.seen == ["closed"]
    assert await dialogue.get_clients("alice") == []
    with pytest.raises(DialogueClientError) as closed:
        await alice.request("ping")
    assert closed.value.code == "UNAVAILABLE"


# --- reconnect and recovery -------------------------------------------------------------

async def test_reconnects_and_recovers_across_a_server_restart(serve, clients):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice, bob = await clients(srv, "alice"), await clients(srv, "bob")
    alice_states, bob_states = States(alice), States(bob)
    alices = await alice.join("chat")
    seen = Seen()  # alice: a handler
    alices.on("message", seen)
    bobs = await bob.join("chat")
    iterated: list[dict[str, Any]] = []  # bob: the iterator

    async def read_bob() -> None:
        async for msg in bobs:
            iterated.append(msg)

    reader = asyncio.create_task(read_bob())
    first_ids = (alice.client_id, bob.client_id)
    epoch = alices.position["epoch"]
    for i in range(1, 6):  # 1..10 from both clients
        await alices.publish("message", {"text": f"a{i}"})
        await bobs.publish("message", {"text": f"b{i}"})
    await seen.wait(10)

    await srv.stop()
    await alice_states.wait("reconnecting")
    await bob_states.wait("reconnecting")
    for i in range(11, 21):  # the application goes on while the server is down
        await dialogue.trigger("chat", message, {"text": f"s{i}"})
    await asyncio.sleep(0.2)  # a few failed reconnect attempts
    assert alice.state == bob.state == "reconnecting"
    await srv.start()
    await dialogue.trigger("chat", message, {"text": "s21"})  # racing the rejoin
    await alice_states.wait("connected")
    await bob_states.wait("connected")
    assert alice.client_id not in first_ids and bob.client_id not in first_ids
    for i in range(22, 27):
        await (alices if i % 2 else bobs).publish("message", {"text": f"x{i}"})

    total = 26
    await seen.wait(total)
    await wait_until(lambda: len(iterated) >= total, 3)
    await asyncio.sleep(0.05)  # nothing more (no duplicate) arrives late
    assert seen.seqs == list(range(1, total + 1))
    assert [m["seq"] for m in iterated] == list(range(1, total + 1))
    assert [m["data"]["text"] for m in seen.frames] == [m["data"]["text"] for m in iterated]
    assert alices.position == bobs.position == {"seq": total, "epoch": epoch}
    assert alice.close_code in (1001, 1012) and alice_states.seen[-2:] == ["reconnecting", "connected"]
    assert sorted(m.user_id for m in await dialogue.presence("chat")) == ["alice", "bob"]
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)


async def test_recovers_after_a_dropped_socket(serve, clients):
    rejoin_started, rejoin_go = asyncio.Event(), asyncio.Event()
    joins: list[str] = []

    async def hold_the_rejoin(identity: Identity, room_id: str) -> bool:
        joins.append(identity.user_id)
        if identity.user_id == "alice" and joins.count("alice") == 2:
            rejoin_started.set()
            await rejoin_go.wait()
        return True

    dialogue = make_dialogue(hooks=Hooks(before_join=hold_the_rejoin))
    srv = await serve(dialogue)
    alice, bob = await clients(srv, "alice"), await clients(srv, "bob")
    states = States(alice)
    alices = await alice.join("chat")
    seen = Seen()
    alices.on("message", seen)
    bobs = await bob.join("chat")
    for i in range(1, 6):
        await bobs.publish("message", {"text": str(i)})
    await seen.wait(5)

    drop_socket(alice)
    await states.wait("reconnecting")
    assert alice.close_code == 1006
    await asyncio.wait_for(rejoin_started.wait(), 3)  # the new socket is open, the rejoin waits
    for i in range(6, 11):  # alice can only get these by recovery
        await bobs.publish("message", {"text": str(i)})
    rejoin_go.set()
    await states.wait("connected")
    for i in range(11, 16):
        await bobs.publish("message", {"text": str(i)})
    await seen.wait(15)
    await asyncio.sleep(0.05)
    assert seen.seqs == list(range(1, 16))
    assert [m["data"]["text"] for m in seen.frames] == [str(i) for i in range(1, 16)]


async def test_requests_wait_for_a_reconnect_in_progress(serve, clients):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await clients(srv, "alice")
    states = States(alice)
    room = await alice.join("chat")
    await srv.stop()
    await states.wait("reconnecting")
    publish = asyncio.create_task(room.publish("message", {"text": "queued"}))
    await asyncio.sleep(0.2)
    assert not publish.done()
    await srv.start()
    assert await asyncio.wait_for(publish, 3) == 1
    assert alice.state == "connected"


async def test_requests_fail_unavailable_when_the_reconnect_takes_too_long(serve, clients):
    srv = await serve(make_dialogue())
    alice = await clients(srv, "alice", ack_timeout=0.2)
    states = States(alice)
    room = await alice.join("chat")
    await srv.stop()
    await states.wait("reconnecting")
    with pytest.raises(DialogueClientError) as unavailable:
        await room.publish("message", {"text": "lost"})
    assert unavailable.value.code == "UNAVAILABLE"
    await srv.start()
    await states.wait("connected")
    assert await room.publish("message", {"text": "later"}) == 1


async def test_a_request_in_flight_when_the_socket_drops_fails_unavailable(serve, clients):
    started, go = asyncio.Event(), asyncio.Event()

    async def hold_feed(identity: Identity, room_id: str) -> bool:
        if room_id == "feed" and not go.is_set():
            started.set()
            await go.wait()
        return True

    srv = await serve(make_dialogue(hooks=Hooks(before_join=hold_feed)))
    alice = await clients(srv, "alice")
    states = States(alice)
    try:
        join = asyncio.create_task(alice.join("feed"))
        await asyncio.wait_for(started.wait(), 2)
        drop_socket(alice)
        with pytest.raises(DialogueClientError) as lost:
            await asyncio.wait_for(join, 2)
        assert lost.value.code == "UNAVAILABLE"
        assert alice.room("feed") is None
    finally:
        go.set()
    await states.wait("connected")
    assert (await alice.join("feed")).id == "feed"  # not applied: join again after a drop


async def test_close_fails_requests_in_flight(serve, clients):
    started, go = asyncio.Event(), asyncio.Event()

    async def hold(identity: Identity, room_id: str) -> bool:
        started.set()
        await go.wait()
        return True

    srv = await serve(make_dialogue(hooks=Hooks(before_join=hold)))
    alice = await clients(srv, "alice")
    try:
        join = asyncio.create_task(alice.join("chat"))
        await asyncio.wait_for(started.wait(), 2)
        await alice.close()
        with pytest.raises(DialogueClientError) as closed:
            await asyncio.wait_for(join, 2)
        assert closed.value.code == "UNAVAILABLE"
        assert alice.state == "closed"
    finally:
        go.set()


async def test_a_refused_reconnect_4001_closes_for_good(serve, clients):
    revoked: set[str] = set()

    def check(conn: HTTPConnection) -> Identity:
        token = conn.headers["authorization"].removeprefix("Bearer ")  # the client's header
        if token in revoked:
            raise Reject("token revoked")
        return Identity(token)

    srv = await serve(make_dialogue(authenticate=check))
    alice = await clients(srv, "alice")
    states = States(alice)
    room = await alice.join("chat")
    revoked.add("alice")
    drop_socket(alice)
    await asyncio.wait_for(alice.wait_closed(), 3)
    assert alice.close_code == 4001 and "token revoked" in alice.close_reason
    assert states.seen == ["reconnecting", "closed"]
    assert room.closed


async def test_a_replaced_token_is_used_on_reconnect(serve, clients):
    tokens: list[str] = []

    def check(conn: HTTPConnection) -> Identity:
        token = conn.headers["authorization"].removeprefix("Bearer ")  # the client's header
        tokens.append(token)
        return Identity(token.split("-")[0])

    srv = await serve(make_dialogue(authenticate=check))
    alice = await clients(srv, "alice-1")
    states = States(alice)
    await alice.join("chat")
    alice.token = "alice-2"  # e.g. refreshed before it expires
    drop_socket(alice)
    await states.wait("connected")
    assert tokens == ["alice-1", "alice-2"]
    assert alice.user_id == "alice" and alice.room("chat") is not None


async def test_a_room_gone_on_rejoin_is_reported_to_on_error(serve, clients):
    dialogue = make_dialogue()
    await dialogue.create_room("temp", RoomConfig(name="Temp"))
    srv = await serve(dialogue)
    alice = await clients(srv, "alice")
    states = States(alice)
    errors = Seen()
    alice.on_error(errors)
    temp = await alice.join("temp")
    chat = await alice.join("chat")
    await srv.stop()
    await dialogue.delete_room("temp")
    await srv.start()
    await states.wait("connected")
    await errors.wait(1)
    assert errors.frames[0]["op"] == "error" and errors.frames[0]["room"] == "temp"
    assert errors.frames[0]["error"]["code"] == "ROOM_NOT_FOUND"
    assert temp.closed and alice.room("temp") is None
    assert alice.room("chat") is chat and not chat.closed
    assert await chat.publish("message", {"text": "still here"}) == 1


async def test_unsubscribing_from_everything_survives_a_reconnect(serve, clients):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await clients(srv, "alice")
    states = States(alice)
    room = await alice.join("chat")  # subscriptions "*"
    await room.unsubscribe(["typing"])
    seen = Seen()
    room.on("*", seen)
    drop_socket(alice)
    await states.wait("connected")
    await dialogue.trigger("chat", typing, {})
    await dialogue.trigger("chat", message, {"text": "hi"})
    await seen.wait(1)
    await asyncio.sleep(0.05)
    assert [f["event"] for f in seen.frames] == ["message"]


async def test_on_reset_when_the_gap_is_beyond_the_recovery_window(serve, clients):
    dialogue = make_dialogue(recovery_window=5)
    srv = await serve(dialogue)
    alice = await clients(srv, "alice")
    states = States(alice)
    room = await alice.join("feed")
    seen, resets = Seen(), Seen()
    room.on("tick", seen)
    room.on_reset(resets)
    for i in range(1, 4):
        await dialogue.trigger("feed", "tick", i)
    await seen.wait(3)
    epoch = room.position["epoch"]

    await srv.stop()
    for i in range(4, 24):  # 20 missed; the window keeps 5
        await dialogue.trigger("feed", "tick", i)
    await srv.start()
    await resets.wait(1)
    assert resets.frames == [{"seq": 23, "epoch": epoch, "previous": {"seq": 3, "epoch": epoch}}]
    await states.wait("connected")
    assert room.position == {"seq": 23, "epoch": epoch}
    await dialogue.trigger("feed", "tick", 24)
    await seen.wait(4)
    assert seen.seqs == [1, 2, 3, 24]  # nothing of the gap: page history to fill it
    assert len(resets.frames) == 1


async def test_on_reset_when_the_room_was_recreated_with_a_new_epoch(serve, clients):
    dialogue = make_dialogue()
    await dialogue.create_room("temp", RoomConfig(name="Temp"))
    srv = await serve(dialogue)
    alice = await clients(srv, "alice")
    room = await alice.join("temp")
    seen, resets = Seen(), Seen()
    room.on("tick", seen)
    room.on_reset(resets)
    for i in range(1, 6):
        await dialogue.trigger("temp", "tick", i)
    await seen.wait(5)
    old_epoch = room.position["epoch"]

    await srv.stop()
    await dialogue.delete_room("temp")
    await dialogue.create_room("temp", RoomConfig(name="Temp"))
    await dialogue.trigger("temp", "tick", "new-1")
    await dialogue.trigger("temp", "tick", "new-2")
    new_epoch = (await dialogue.position("temp")).epoch
    assert new_epoch != old_epoch
    await srv.start()
    await resets.wait(1)
    assert resets.frames == [{"seq": 2, "epoch": new_epoch, "previous": {"seq": 5, "epoch": old_epoch}}]
    await wait_until(lambda: alice.connected)
    await dialogue.trigger("temp", "tick", "new-3")
    await seen.wait(6)
    assert [(f["seq"], f["data"]) for f in seen.frames[5:]] == [(3, "new-3")]
    assert room.position == {"seq": 3, "epoch": new_epoch}


async def test_slow_consumer_is_closed_4009_and_recovers_every_event(serve, clients):
    pad = "x" * 16000  # big events fill the socket buffers quickly
    # A roomy byte bound: the recovery reply is one frame holding every missed event, and
    # a backlog above send_queue_max_bytes is an overflow.
    dialogue = make_dialogue(send_queue_max_messages=20, send_queue_max_bytes=256 * 1024 * 1024,
                             recovery_window=20_000, max_recovery=20_000)
    srv = await serve(dialogue)
    alice = await clients(srv, "alice")
    states = States(alice)
    room = await alice.join("feed")
    server_conn = dialogue.runtime.hub.connections[alice.client_id]  # runtime internals, for tests
    caught_up = asyncio.Event()
    seqs: list[int] = []
    total = 0

    async def slow(msg: dict[str, Any]) -> None:
        await caught_up.wait()  # stalls until the server has given up on this client
        seqs.append(msg["seq"])

    room.on("tick", slow)
    while not server_conn.closed:
        total += 1
        await dialogue.trigger("feed", "tick", {"i": total, "pad": pad})
        assert total < 20_000, "the client never fell behind"
    assert server_conn.close_code == 4009
    # the overflowing queue (20 events) was discarded unsent: the client lacks at least those
    assert room.position["seq"] <= total - 21
    for _ in range(10):  # after the close: reached only by recovery
        total += 1
        await dialogue.trigger("feed", "tick", {"i": total, "pad": pad})
    caught_up.set()
    await states.wait("reconnecting")
    await states.wait("connected")
    # 1006 when the stalled socket could not even take the close frame within the server's
    # close grace (a loaded machine; see tests/test_connection.py::assert_closed_as_slow)
    assert alice.close_code in (4009, 1006)
    total += 1
    await dialogue.trigger("feed", "tick", {"i": total})
    await wait_until(lambda: len(seqs) >= total, 5)
    await asyncio.sleep(0.05)
    assert seqs == list(range(1, total + 1))


async def test_recovery_bigger_than_the_send_queue_byte_bound_still_completes(serve, clients):
    dialogue = make_dialogue()  # defaults: max_recovery 1000, 8 MiB send queue, 64 KiB events
    srv = await serve(dialogue)
    alice = await clients(srv, "alice")
    states = States(alice)
    room = await alice.join("feed")
    seen, resets = Seen(), Seen()
    room.on("tick", seen)
    room.on_reset(resets)
    await srv.stop()
    for i in range(600):  # 600 x 16 kB: within max_recovery, about 9.6 MB in one join reply
        await dialogue.trigger("feed", "tick", {"i": i, "pad": "x" * 16000})
    await srv.start()
    await states.wait("connected", timeout=3)  # or at least a reset instead of a 4009 loop
    await wait_until(lambda: len(seen.frames) == 600 or bool(resets.frames), 3)
