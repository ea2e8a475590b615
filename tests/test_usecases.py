"""The use cases without sockets: a started ``Dialogue``'s runtime, ``UseCases.build`` and
callers made by hand (``Caller(identity, "rest")``, a ``Connection`` over a dummy transport)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, Field

from dialogue_fastapi import Dialogue, DialogueError, Hooks, Identity, Reject, RoomConfig, define_event
from dialogue_fastapi.node.connection import Connection
from dialogue_fastapi.usecases import (
    Caller,
    CreateRoomRequest,
    HistoryRequest,
    JoinRequest,
    PublishRequest,
    UseCases,
)


class Text(BaseModel):
    text: str = Field(min_length=1, max_length=200)


message = define_event("message", Text, history=50)
typing = define_event("typing")
ALICE = Identity("alice")


def before_join(identity: Identity, room_id: str) -> bool | None:
    if room_id == "chat" and identity.user_id == "mallory":
        raise Reject("not you")
    if room_id == "chat" and identity.user_id == "eve":
        return False
    if room_id == "chat" and identity.user_id == "oscar":
        raise Reject("full of it", code="ROOM_FULL")
    return None


class DummyTransport:
    """A transport that keeps what it is sent."""

    kind = "websocket"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        pass


@contextlib.asynccontextmanager
async def running(**settings: Any) -> AsyncIterator[tuple[Dialogue, UseCases]]:
    settings.setdefault("rooms", {
        "chat": RoomConfig(name="Chat", events=[message, typing]),
        "open": RoomConfig(name="Open", events=[]),
    })
    dialogue = Dialogue(events=[message, typing], hooks=Hooks(before_join=before_join),
                        allow_anonymous=True, **settings)
    await dialogue.start()
    try:
        yield dialogue, UseCases.build(dialogue.runtime)
    finally:
        await dialogue.stop()


def rest(user: str) -> Caller:
    return Caller(Identity(user), "rest")


async def connection(dialogue: Dialogue, user: str = "alice") -> Connection:
    rt = dialogue.runtime
    conn = Connection(DummyTransport(), Identity(user), rt.queue_limits)
    await rt.connected(conn)
    return conn


async def join(uc: UseCases, conn: Connection, room: str, subscriptions: Any = None) -> dict[str, Any]:
    replies: list[dict[str, Any]] = []
    await uc.members.join(conn, JoinRequest(room, subscriptions), replies.append)
    assert len(replies) == 1
    return replies[0]


async def refused(code: str, awaitable: Any) -> DialogueError:
    with pytest.raises(DialogueError) as info:
        await awaitable
    assert info.value.code == code, info.value
    return info.value


# --- publishing -------------------------------------------------------------------------

async def test_publish_then_history_and_presence() -> None:
    async with running() as (dialogue, uc):
        first = await uc.publishing.publish(rest("alice"), PublishRequest("chat", "message", {"text": "a"}))
        second = await uc.publishing.publish(rest("bob"), PublishRequest("chat", "message", {"text": "b"}))
        assert first.message is not None and second.message is not None
        assert (first.message.seq, second.message.seq) == (1, 2)
        assert first.message.from_ == "alice"
        events, position = await uc.reading.history(rest("carol"), HistoryRequest("chat"))
        assert [m.seq for m in events] == [1, 2] and position.seq == 2
        assert await uc.reading.presence(rest("carol"), "chat") == []
        conn = await connection(dialogue, "dave")
        await join(uc, conn, "chat")
        users = await uc.reading.presence(rest("carol"), "chat")
        assert [(u.user_id, u.client_id) for u in users] == [("dave", conn.client_id)]


@pytest.mark.parametrize(("request_", "code"), [
    (PublishRequest("lobby\n", "message", {"text": "a"}), "BAD_REQUEST"),
    (PublishRequest("a b", "note", 1), "BAD_REQUEST"),
    (PublishRequest("nowhere", "note", 1), "ROOM_NOT_FOUND"),
    (PublishRequest("chat", "nope", {"text": "a"}), "EVENT_NOT_ALLOWED"),
    (PublishRequest("open", "a\nb", 1), "EVENT_NOT_ALLOWED"),
    (PublishRequest("open", "e" * 129, 1), "EVENT_NOT_ALLOWED"),
    (PublishRequest("chat", "message", {"text": ""}), "VALIDATION_FAILED"),
    (PublishRequest("open", "note", "x" * 5000), "PAYLOAD_TOO_LARGE"),
    (PublishRequest("open", "note", "x" * 600, meta={"m": "y" * 600}), "PAYLOAD_TOO_LARGE"),
    (PublishRequest("open", "note", [[[[[[[[[1]]]]]]]]]), "BAD_REQUEST"),
    (PublishRequest("open", "note", 1, meta={"m": [[[[[[[[1]]]]]]]]}), "BAD_REQUEST"),
    (PublishRequest("open", "note", {"t": "\x00"}), "BAD_REQUEST"),
    (PublishRequest("open", "note", 1, meta={"\x00": 1}), "BAD_REQUEST"),
    (PublishRequest("open", "note", 1, idempotency_key="k\x00"), "BAD_REQUEST"),
], ids=["room-newline", "room-space", "unknown-room", "undeclared", "event-newline", "event-129",
        "schema", "too-large", "data-plus-meta-too-large", "data-too-deep", "meta-too-deep", "nul-data",
        "nul-meta-key", "nul-idempotency-key"])
async def test_publish_refusals_are_the_same_for_a_client_and_the_application(
    request_: PublishRequest, code: str
) -> None:
    async with running(max_message_size=1024, max_json_depth=8) as (_dialogue, uc):
        await refused(code, uc.publishing.publish(rest("alice"), request_))
        await refused(code, uc.publishing.trigger(request_))
        # nothing took a seq
        assert (await uc.reading.position("open")).seq == 0
        assert (await uc.reading.position("chat")).seq == 0


async def test_before_join_decides_for_callers_without_a_connection() -> None:
    async with running() as (_dialogue, uc):
        request = PublishRequest("chat", "message", {"text": "hi"})
        error = await refused("FORBIDDEN", uc.publishing.publish(rest("mallory"), request))
        assert error.extra["reason"] == "not you"  # Reject's reason, BLOCKED -> FORBIDDEN
        error = await refused("FORBIDDEN", uc.publishing.publish(rest("eve"), request))
        assert error.extra["reason"] == "refused"  # the hook returned False
        await refused("ROOM_FULL", uc.publishing.publish(rest("oscar"), request))  # its own code
        for caller in (rest("mallory"), rest("eve")):
            await refused("FORBIDDEN", uc.reading.history(caller, HistoryRequest("chat")))
            await refused("FORBIDDEN", uc.reading.presence(caller, "chat"))
            await refused("FORBIDDEN", uc.reading.room_info(caller, "chat"))
        # other rooms, other users and the application are not asked / not refused
        await uc.publishing.publish(rest("mallory"), PublishRequest("open", "note", 1))
        await uc.publishing.publish(rest("alice"), request)
        await uc.publishing.trigger(request, from_="mallory")  # the application publishes as anyone
        assert len(await uc.reading.rooms(rest("mallory"))) == 2  # the listing asks no hook


async def test_a_websocket_reads_history_of_joined_rooms_only() -> None:
    async with running() as (dialogue, uc):
        conn = await connection(dialogue)
        caller = Caller.of(conn)
        await refused("NOT_IN_ROOM", uc.reading.history(caller, HistoryRequest("open")))
        await join(uc, conn, "open")
        events, _ = await uc.reading.history(caller, HistoryRequest("open"))
        assert events == []
        # a WebSocket's publish needs the membership too
        await refused("NOT_IN_ROOM", uc.publishing.publish(caller, PublishRequest("chat", "typing", 1)))
        assert (await uc.publishing.publish(caller, PublishRequest("open", "note", 1))).message is not None


@pytest.mark.parametrize(("fields", "code"), [
    ({"before": 2**63}, "BAD_REQUEST"),
    ({"after": -1}, "BAD_REQUEST"),
    ({"until_ts": 10**30}, "BAD_REQUEST"),
    ({"since_ts": -5}, "BAD_REQUEST"),
    ({"sender": "a\x00"}, "BAD_REQUEST"),
    ({"event": "x\r\nid: 1"}, "EVENT_NOT_ALLOWED"),
], ids=["before-2**63", "after-negative", "until-10**30", "since-negative", "nul-sender", "event-crlf"])
async def test_history_filters_out_of_range_are_bad_requests(fields: dict[str, Any], code: str) -> None:
    async with running() as (_dialogue, uc):
        for caller in (rest("alice"), Caller.server()):
            await refused(code, uc.reading.history(caller, HistoryRequest("open", **fields)))


async def test_history_after_and_before_together() -> None:
    async with running() as (_dialogue, uc):
        for n in range(6):
            await uc.publishing.trigger(PublishRequest("open", "note", n))
        events, _ = await uc.reading.history(rest("alice"), HistoryRequest("open", after=1, before=5))
        assert [m.seq for m in events] == [2, 3, 4]
        events, _ = await uc.reading.history(rest("alice"), HistoryRequest("open", after=1, before=5,
                                                                           limit=2))
        assert [m.seq for m in events] == [2, 3]


# --- rooms ------------------------------------------------------------------------------

async def test_max_rooms_per_user() -> None:
    async with running(max_rooms_per_user=2) as (dialogue, uc):
        for n in (1, 2):
            room = await uc.rooms.create(rest("alice"), CreateRoomRequest(f"a{n}", "A", events=["message"]))
            assert room.created_by == "alice" and room.runtime
        error = await refused("FORBIDDEN", uc.rooms.create(rest("alice"), CreateRoomRequest("a3", "A")))
        assert error.extra["limit"] == 2
        assert dialogue.runtime.registry.find("a3") is None
        # the limit counts per user, on every transport, and the application is not limited
        conn = await connection(dialogue, "alice")
        await refused("FORBIDDEN", uc.rooms.create(Caller.of(conn), CreateRoomRequest("a3", "A")))
        await uc.rooms.create(rest("bob"), CreateRoomRequest("b1", "B"))
        await uc.rooms.create_as_server("s1", RoomConfig(name="S"), created_by="alice")  # a 3rd
        # deleting one frees a place, once she is below the limit (s1 counts as hers)
        await uc.rooms.delete(rest("alice"), "a1")
        await refused("FORBIDDEN", uc.rooms.create(rest("alice"), CreateRoomRequest("a3", "A")))
        await uc.rooms.delete(rest("alice"), "s1")
        await uc.rooms.create(rest("alice"), CreateRoomRequest("a3", "A"))


@pytest.mark.parametrize(("request_", "code"), [
    (CreateRoomRequest("lobby\n", "L"), "BAD_REQUEST"),
    (CreateRoomRequest("x\x00", "L"), "BAD_REQUEST"),
    (CreateRoomRequest("r" * 200, "L"), "BAD_REQUEST"),
    (CreateRoomRequest("chat", "L"), "ROOM_EXISTS"),
    (CreateRoomRequest("new", "L", events=["undefined"]), "EVENT_NOT_ALLOWED"),
], ids=["newline", "nul", "200-chars", "exists", "undefined-event"])
async def test_create_room_refusals(request_: CreateRoomRequest, code: str) -> None:
    async with running() as (_dialogue, uc):
        await refused(code, uc.rooms.create(rest("alice"), request_))


async def test_clients_may_not_create_rooms_when_switched_off() -> None:
    async with running(allow_client_rooms=False) as (_dialogue, uc):
        await refused("FORBIDDEN", uc.rooms.create(rest("alice"), CreateRoomRequest("mine", "M")))
        await uc.rooms.create_as_server("mine", RoomConfig(name="M"))


async def test_delete_room_rules() -> None:
    async with running() as (_dialogue, uc):
        await uc.rooms.create(rest("alice"), CreateRoomRequest("mine", "M"))
        await refused("FORBIDDEN", uc.rooms.delete(rest("bob"), "mine"))
        await refused("FORBIDDEN", uc.rooms.delete(rest("alice"), "chat"))
        await refused("BAD_REQUEST", uc.rooms.delete(rest("alice"), "a b"))
        await refused("ROOM_NOT_FOUND", uc.rooms.delete(rest("alice"), "nowhere"))
        await uc.rooms.delete(rest("alice"), "mine")


# --- members ----------------------------------------------------------------------------

async def test_subscriptions_are_capped_and_limited_to_declared_events() -> None:
    async with running(max_subscriptions=8) as (dialogue, uc):
        conn = await connection(dialogue)
        await refused("NOT_IN_ROOM", _call(uc.members.subscribe, conn, "open", ["x"]))
        await refused("NOT_IN_ROOM", _call(uc.members.unsubscribe, conn, "open", ["x"]))
        await refused("NOT_IN_ROOM", uc.members.leave(conn, "open"))
        await join(uc, conn, "open", ["a"])
        names = [f"n{i}" for i in range(7)]
        assert uc.members.subscribe(conn, "open", names) == {"subscriptions": sorted(["a", *names])}
        # one more name is over the cap of 8 names in the room's subscriptions
        await refused("BAD_REQUEST", _call(uc.members.subscribe, conn, "open", ["one-more"]))
        await refused("BAD_REQUEST", _call(uc.members.subscribe, conn, "open", [f"m{i}" for i in range(9)]))
        assert uc.members.subscribe(conn, "open", names) == {"subscriptions": sorted(["a", *names])}
        await refused("EVENT_NOT_ALLOWED", _call(uc.members.subscribe, conn, "open", ["a\nb"]))

        # all events, minus exclusions: the exclusions are capped the same way
        await join(uc, conn, "chat", "*")
        await refused("EVENT_NOT_ALLOWED", _call(uc.members.unsubscribe, conn, "chat", ["nope"]))
        await refused("EVENT_NOT_ALLOWED", _call(uc.members.subscribe, conn, "chat", ["nope"]))
        assert uc.members.unsubscribe(conn, "chat", ["typing"]) == {"subscriptions": "*",
                                                                   "excluded": ["typing"]}
        assert conn.rooms["chat"].excluded == {"typing"}
        conn2 = await connection(dialogue, "bob")
        await join(uc, conn2, "open", "*")
        excluded = [f"x{i}" for i in range(8)]
        uc.members.unsubscribe(conn2, "open", excluded)
        await refused("BAD_REQUEST", _call(uc.members.unsubscribe, conn2, "open", ["x-more"]))
        await refused("BAD_REQUEST", _call(uc.members.unsubscribe, conn2, "open",
                                           [f"u{i}" for i in range(5000)]))
        assert conn2.rooms["open"].excluded == frozenset(excluded)
        uc.members.unsubscribe(conn2, "open", excluded)  # the same names again: no growth
        reply = uc.members.subscribe(conn2, "open", ["x0"])
        assert reply == {"subscriptions": "*", "excluded": excluded[1:]}
        # the reply stays small: at most max_subscriptions names of at most 128 characters
        assert len(orjson.dumps(reply)) <= 8 * (128 + 3) + 64
        await uc.members.leave(conn2, "open")
        assert "open" not in conn2.rooms


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


async def test_join_refusals_leave_nothing_behind() -> None:
    async with running() as (dialogue, uc):
        conn = await connection(dialogue, "mallory")
        await refused("JOIN_DENIED", join(uc, conn, "chat"))
        await refused("BAD_REQUEST", join(uc, conn, "lobby\n"))
        await refused("ROOM_NOT_FOUND", join(uc, conn, "nowhere"))
        await refused("EVENT_NOT_ALLOWED", join(uc, conn, "open", ["a\x00"]))
        await refused("EVENT_NOT_ALLOWED", join(uc, conn, "chat", ["nope"]))
        await refused("BAD_REQUEST", join(uc, conn, "open", [f"e{i}" for i in range(65)]))
        assert conn.rooms == {}
        for room in ("chat", "open"):
            assert await uc.reading.presence(Caller.server(), room) == []


# --- users ------------------------------------------------------------------------------

async def test_user_operations_follow_the_input_rules() -> None:
    async with running(max_message_size=1024) as (dialogue, uc):
        with pytest.raises(DialogueError) as info:
            await uc.users.send_to_user("alice", "a\nb", 1)
        assert info.value.code == "EVENT_NOT_ALLOWED"
        for user, data, code in (("a\x00", 1, "BAD_REQUEST"), ("alice", "x" * 2000, "PAYLOAD_TOO_LARGE"),
                                 ("alice", {"k": "\x00"}, "BAD_REQUEST")):
            await refused(code, uc.users.send_to_user(user, "note", data))
        await refused("BAD_REQUEST", uc.users.disconnect_user("a\nb", "bye"))
        conn = await connection(dialogue, "alice")
        await join(uc, conn, "open")
        assert await uc.users.clients_of("alice") == [conn.client_id]
        assert await uc.users.in_room("alice", "open")
        assert not await uc.users.in_room("alice", "chat")
