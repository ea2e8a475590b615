"""Rooms: declared in config, created and deleted at runtime, and their announcements."""

from __future__ import annotations

import pytest
from helpers import Calls, authenticate, ws_as
from pydantic import BaseModel

from dialogue_fastapi import Dialogue, DialogueError, Hooks, RoomConfig, define_event
from dialogue_fastapi.testing import ProbeError

INFO_KEYS = {"id", "name", "description", "max_size", "size", "events",
             "default_subscriptions", "channels", "created_by"}


class Text(BaseModel):
    text: str


message = define_event("message", Text, history=10)
typing = define_event("typing")
reaction = define_event("reaction")  # defined by the app, listed in no config room


def make_dialogue(**settings: object) -> Dialogue:
    rooms = {
        "lobby": RoomConfig(name="Lobby", description="everyone", events=[message, typing],
                            max_size=50),
        "general": RoomConfig(name="General"),
    }
    return Dialogue(rooms=rooms, events=[reaction], authenticate=authenticate, **settings)


def by_id(rooms: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {room["id"]: room for room in rooms}


async def test_rooms_op_lists_config_rooms(serve, probe):
    srv = await serve(make_dialogue())
    alice = await probe(ws_as(srv, "alice"))
    await alice.request("join", room="lobby")
    rooms = by_id((await alice.request("rooms"))["rooms"])
    assert set(rooms) == {"lobby", "general"}
    lobby = rooms["lobby"]
    assert set(lobby) == INFO_KEYS
    assert lobby["name"] == "Lobby" and lobby["description"] == "everyone"
    assert lobby["events"] == ["message", "typing"]
    assert lobby["max_size"] == 50 and lobby["size"] == 1
    assert lobby["created_by"] is None
    assert rooms["general"]["size"] == 0 and rooms["general"]["events"] == []
    assert rooms["general"]["created_by"] is None


async def test_server_created_room_is_listed_and_usable(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    room = await dialogue.create_room("ops", RoomConfig(name="Ops", events=[message]),
                                      created_by=None)
    assert room.id == "ops" and room.created_by is None
    rooms = by_id((await alice.request("rooms"))["rooms"])
    assert rooms["ops"]["name"] == "Ops" and rooms["ops"]["created_by"] is None
    assert rooms["ops"]["events"] == ["message"]
    await alice.request("join", room="ops")
    ack = await alice.request("publish", room="ops", event="message", data={"text": "up"})
    assert ack["seq"] == 1
    bad = await alice.reply("publish", room="ops", event="typing", data={})
    assert bad["error"]["code"] == "EVENT_NOT_ALLOWED"


async def test_client_created_room_records_its_creator(serve, probe):
    srv = await serve(make_dialogue())
    alice = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    info = await alice.request("create_room", room="book-club", name="Book club",
                               description="weekly", max_size=5, events=["message", "reaction"])
    assert set(info) == INFO_KEYS
    assert info["id"] == "book-club" and info["created_by"] == "alice"
    assert info["events"] == ["message", "reaction"] and info["max_size"] == 5
    assert info["description"] == "weekly" and info["size"] == 0
    listed = by_id((await bob.request("rooms"))["rooms"])
    assert listed["book-club"]["created_by"] == "alice"
    await bob.request("join", room="book-club")
    bad = await bob.reply("publish", room="book-club", event="message", data={"text": 1})
    assert bad["error"]["code"] == "VALIDATION_FAILED"  # the app's definition is used


async def test_client_room_creation_can_be_turned_off(serve, probe):
    dialogue = make_dialogue(allow_client_rooms=False)
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    with pytest.raises(ProbeError) as refused:
        await alice.request("create_room", room="mine", name="Mine")
    assert refused.value.code == "FORBIDDEN"
    await dialogue.create_room("by-app", RoomConfig(name="App"))  # the application still may
    assert set(by_id((await alice.request("rooms"))["rooms"])) == {"lobby", "general", "by-app"}


async def test_client_room_may_only_name_defined_events(serve, probe):
    srv = await serve(make_dialogue())
    alice = await probe(ws_as(srv, "alice"))
    with pytest.raises(ProbeError) as refused:
        await alice.request("create_room", room="free", name="Free", events=["message", "hack"])
    assert refused.value.code == "EVENT_NOT_ALLOWED"
    assert "hack" in refused.value.message
    assert "free" not in by_id((await alice.request("rooms"))["rooms"])


async def test_create_room_with_taken_id_is_room_exists(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    await alice.request("create_room", room="mine", name="Mine")
    for taken in ("mine", "lobby"):
        with pytest.raises(ProbeError) as refused:
            await alice.request("create_room", room=taken, name="Again")
        assert refused.value.code == "ROOM_EXISTS"
    with pytest.raises(DialogueError) as server_refused:
        await dialogue.create_room("mine", RoomConfig(name="Server"))
    assert server_refused.value.code == "ROOM_EXISTS"
    rooms = by_id((await alice.request("rooms"))["rooms"])
    assert rooms["mine"]["name"] == "Mine" and rooms["lobby"]["name"] == "Lobby"


async def test_only_the_creator_deletes_a_room(serve, probe):
    srv = await serve(make_dialogue())
    alice = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    await alice.request("create_room", room="mine", name="Mine")
    with pytest.raises(ProbeError) as refused:
        await bob.request("delete_room", room="mine")
    assert refused.value.code == "FORBIDDEN"
    assert "mine" in by_id((await bob.request("rooms"))["rooms"])
    assert await alice.request("delete_room", room="mine") == {}
    assert "mine" not in by_id((await bob.request("rooms"))["rooms"])


async def test_server_created_room_cannot_be_deleted_by_a_client(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    await dialogue.create_room("ops", RoomConfig(name="Ops"), created_by=None)
    with pytest.raises(ProbeError) as refused:
        await alice.request("delete_room", room="ops")
    assert refused.value.code == "FORBIDDEN"
    await dialogue.delete_room("ops")  # the application may
    assert "ops" not in by_id((await alice.request("rooms"))["rooms"])


async def test_config_rooms_cannot_be_deleted_by_clients(serve, probe):
    srv = await serve(make_dialogue())
    alice = await probe(ws_as(srv, "alice"))
    for room in ("lobby", "general"):
        with pytest.raises(ProbeError) as refused:
            await alice.request("delete_room", room=room)
        assert refused.value.code == "FORBIDDEN"
    assert set(by_id((await alice.request("rooms"))["rooms"])) == {"lobby", "general"}


async def test_room_created_and_deleted_reach_every_client(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    member = await probe(ws_as(srv, "alice"))
    await member.request("join", room="lobby")
    outsider = await probe(ws_as(srv, "bob"))  # in no room at all
    creator = await probe(ws_as(srv, "carol"))
    await creator.request("create_room", room="pop-up", name="Pop-up", events=["typing"])
    for client in (member, outsider, creator):
        frame = await client.next("room_created", timeout=2)
        assert set(frame["room"]) == INFO_KEYS
        assert frame["room"]["id"] == "pop-up" and frame["room"]["created_by"] == "carol"
    await dialogue.create_room("server-room", RoomConfig(name="S"))
    for client in (member, outsider, creator):
        frame = await client.next("room_created", timeout=2)
        assert frame["room"]["id"] == "server-room" and frame["room"]["created_by"] is None
    await creator.request("delete_room", room="pop-up")
    await dialogue.delete_room("server-room")
    for client in (member, outsider, creator):
        assert (await client.next("room_deleted", timeout=2))["room"] == "pop-up"
        assert (await client.next("room_deleted", timeout=2))["room"] == "server-room"


async def test_deleting_a_room_removes_its_members(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    await alice.request("create_room", room="temp", name="Temp")
    await alice.request("join", room="temp")
    await bob.request("join", room="temp")
    await bob.request("publish", room="temp", event="x", data=0)
    for member in (alice, bob):
        assert (await member.next("event", 2))["seq"] == 1
    old_epoch = (await dialogue.position("temp")).epoch
    assert (await bob.request("presence", room="temp"))["count"] == 2
    await alice.request("delete_room", room="temp")
    assert (await bob.next("room_deleted", timeout=2))["room"] == "temp"
    with pytest.raises(ProbeError) as gone:
        await bob.request("publish", room="temp", event="x", data=1)
    assert gone.value.code in {"ROOM_NOT_FOUND", "NOT_IN_ROOM"}
    with pytest.raises(DialogueError) as no_presence:
        await dialogue.presence("temp")
    assert no_presence.value.code == "ROOM_NOT_FOUND"
    # the same id again is a new, empty room: no member carried over
    await dialogue.create_room("temp", RoomConfig(name="Temp again"))
    assert (await dialogue.position("temp")).seq == 0
    assert await dialogue.presence("temp") == []
    assert not await dialogue.is_in_room("bob", "temp")
    with pytest.raises(ProbeError) as not_member:
        await bob.request("publish", room="temp", event="x", data=1)
    assert not_member.value.code == "NOT_IN_ROOM"
    assert await dialogue.history("temp") == []  # the old history is forgotten
    fresh = await dialogue.trigger("temp", "x", {"n": 1})
    assert fresh.seq == 1 and (await dialogue.position("temp")).epoch != old_epoch
    assert await bob.nothing("event", 0.2)
    assert await alice.nothing("event", 0.05)


@pytest.mark.parametrize(("op", "fields"), [
    ("join", {}),
    ("publish", {"event": "message", "data": {"text": "hi"}}),
    ("history", {}),
    ("presence", {}),
    ("delete_room", {}),
])
async def test_unknown_room_is_room_not_found(serve, probe, op, fields):
    srv = await serve(make_dialogue())
    alice = await probe(ws_as(srv, "alice"))
    with pytest.raises(ProbeError) as refused:
        await alice.request(op, room="nowhere", **fields)
    assert refused.value.code == "ROOM_NOT_FOUND"


async def test_server_api_on_unknown_room_raises_room_not_found():
    dialogue = make_dialogue()
    for attempt in (lambda: dialogue.trigger("nowhere", "message", {"text": "x"}),
                    lambda: dialogue.delete_room("nowhere"), lambda: dialogue.presence("nowhere"),
                    lambda: dialogue.history("nowhere")):
        with pytest.raises(DialogueError) as refused:
            await attempt()
        assert refused.value.code == "ROOM_NOT_FOUND"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_room_lifecycle_hooks_fire(serve, probe, kind):
    calls = Calls()
    build = calls.sync if kind == "sync" else calls.async_
    hooks = Hooks(on_room_created=build("created"), on_room_deleted=build("deleted"))
    dialogue = make_dialogue(hooks=hooks)
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    await alice.request("create_room", room="by-alice", name="A")
    await dialogue.create_room("by-server", RoomConfig(name="S"))
    assert await calls.wait_for("created", 2) == [("by-alice", "alice"), ("by-server", None)]
    assert calls.named("deleted") == []
    await alice.request("delete_room", room="by-alice")
    await dialogue.delete_room("by-server")
    assert await calls.wait_for("deleted", 2) == [("by-alice",), ("by-server",)]
