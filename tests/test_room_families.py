"""Room families: rooms declared as patterns, resolved on first use, authorized per instance."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from helpers import authenticate, ws_as
from pydantic import BaseModel, ValidationError

from dialogue_fastapi import Dialogue, DialogueError, Identity, Reject, RoomConfig, define_event
from dialogue_fastapi.testing import ProbeError, SseProbe


class Text(BaseModel):
    text: str


message = define_event("message", Text, history=10)
COLLABORATORS = {"7": {"alice"}, "8": {"bob"}}
seen_rooms: list[tuple[str | None, dict[str, str]]] = []


async def collaborator(identity: Identity, room: Any) -> bool:
    if room.params["doc_id"] == "9":
        raise Reject("document 9 is archived")
    return identity.user_id in COLLABORATORS.get(room.params["doc_id"], set())


async def record_room(ctx: Any, call_next: Any) -> Any:
    seen_rooms.append((ctx.room.family, dict(ctx.room.params)))
    return await call_next(ctx)


def make_dialogue(**settings: Any) -> Dialogue:
    return Dialogue(rooms={
        "lobby": RoomConfig(name="Lobby"),
        "dm:{a}:{b}": RoomConfig(name="Direct messages", events=[message], members=["a", "b"],
                                 middleware=[record_room]),
        "doc:{doc_id:int}": RoomConfig(name="Document", authorize=collaborator),
    }, authenticate=authenticate, **settings)


@pytest.fixture
async def server(serve: Any) -> Any:
    dialogue = make_dialogue()
    return dialogue, await serve(dialogue)


async def refused(probe: Any, op: str, **fields: Any) -> dict[str, Any]:
    with pytest.raises(ProbeError) as caught:
        await probe.request(op, **fields)
    return caught.value.error


@pytest.mark.parametrize("rooms, words", [
    ({"x:{a}": RoomConfig(name="a"), "x:{b:int}": RoomConfig(name="b")}, "can match the same room id"),
    ({"d-{a}": RoomConfig(name="a")}, "must be a literal"),
    ({"dm:{a}": RoomConfig(name="a", members=["z"])}, "not among its parameters"),
    ({"x:{a}:{a}": RoomConfig(name="a")}, "names a parameter twice"),
    ({"lobby": RoomConfig(name="l", members=["a"])}, "members= is for room families"),
], ids=["overlap", "mixed-segment", "unknown-member", "twice", "members-on-plain-room"])
def test_a_bad_family_is_refused_at_startup(rooms: dict[str, RoomConfig], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        Dialogue(rooms=rooms, allow_anonymous=True)


def test_families_that_cannot_overlap_are_accepted() -> None:
    Dialogue(rooms={"a:{x}": RoomConfig(name="a"), "b:{x}": RoomConfig(name="b"),
                    "a:{x}:{y}": RoomConfig(name="c"), "n:{x:int}": RoomConfig(name="n"),
                    "n:latest": RoomConfig(name="latest")}, allow_anonymous=True)


async def test_members_of_an_instance_talk_and_others_are_refused_everywhere(server, probe):
    _, srv = server
    alice, bob = await probe(ws_as(srv, "alice")), await probe(ws_as(srv, "bob"))
    joined = await alice.request("join", room="dm:alice:bob")
    assert joined["room"]["family"] == "dm:{a}:{b}"
    assert joined["room"]["params"] == {"a": "alice", "b": "bob"}
    await bob.request("join", room="dm:alice:bob")
    ack = await alice.request("publish", room="dm:alice:bob", event="message", data={"text": "hi"})
    assert ack["seq"] == 1
    assert (await bob.next("event"))["data"] == {"text": "hi"}
    assert ("dm:{a}:{b}", {"a": "alice", "b": "bob"}) in seen_rooms  # middleware's ctx.room

    carol = await probe(ws_as(srv, "carol"))
    assert (await refused(carol, "join", room="dm:alice:bob"))["code"] == "FORBIDDEN"
    assert (await refused(carol, "presence", room="dm:alice:bob"))["code"] == "FORBIDDEN"
    sse = await SseProbe.open(srv.http_url + "/sse?room=dm:alice:bob&token=carol")
    await sse.close()
    assert sse.status == 403 and sse.error()["code"] == "FORBIDDEN"
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        mine = await http.get("/rooms/dm:alice:bob/history", params={"token": "alice"})
        assert mine.status_code == 200 and [e["seq"] for e in mine.json()["events"]] == [1]
        theirs = await http.get("/rooms/dm:alice:bob/history", params={"token": "carol"})
        assert theirs.status_code == 403 and theirs.json()["error"]["code"] == "FORBIDDEN"
        post = await http.post("/rooms/dm:alice:bob/events", params={"token": "carol"},
                               json={"event": "message", "data": {"text": "let me in"}})
        assert post.status_code == 403
        info = await http.get("/rooms/dm:alice:bob", params={"token": "bob"})
        assert info.status_code == 200 and info.json()["params"] == {"a": "alice", "b": "bob"}
        assert (await http.get("/rooms/dm:alice:bob", params={"token": "carol"})).status_code == 403


async def test_one_pair_is_one_room(server, probe):
    _, srv = server
    bob = await probe(ws_as(srv, "bob"))
    error = await refused(bob, "join", room="dm:bob:alice")
    assert error["code"] == "BAD_REQUEST" and "dm:alice:bob" in error["message"]
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        response = await http.get("/rooms/dm:bob:alice/history", params={"token": "bob"})
        assert response.status_code == 400 and "dm:alice:bob" in response.json()["error"]["message"]
    await bob.request("join", room="dm:bob:bob")  # a pair of one: notes to self


async def test_authorize_decides_per_instance(server, probe):
    _, srv = server
    alice, bob = await probe(ws_as(srv, "alice")), await probe(ws_as(srv, "bob"))
    await alice.request("join", room="doc:7")
    assert (await refused(bob, "join", room="doc:7"))["code"] == "FORBIDDEN"
    await bob.request("join", room="doc:8")
    archived = await refused(alice, "join", room="doc:9")
    assert archived["code"] == "FORBIDDEN" and archived["reason"] == "document 9 is archived"
    assert (await refused(alice, "join", room="doc:seven"))["code"] == "ROOM_NOT_FOUND"


async def test_listings_show_families_not_instances_and_nothing_is_announced(server, probe):
    dialogue, srv = server
    watcher = await probe(ws_as(srv, "watcher"))
    await watcher.request("join", room="lobby")
    alice = await probe(ws_as(srv, "alice"))
    await alice.request("join", room="dm:alice:bob")
    await dialogue.trigger("dm:alice:bob", "message", {"text": "from the app"})
    assert (await alice.next("event"))["from"] == "server"
    rooms = {room["id"]: room for room in (await watcher.request("rooms"))["rooms"]}
    assert set(rooms) == {"lobby", "dm:{a}:{b}", "doc:{doc_id:int}"}
    assert rooms["dm:{a}:{b}"]["family"] is True and "params" not in rooms["dm:{a}:{b}"]
    assert "family" not in rooms["lobby"]
    await watcher.request("ping")  # its reply is the next frame: no room_created came first
    assert await watcher.nothing("room_created")
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        listed = (await http.get("/rooms", params={"token": "watcher"})).json()["rooms"]
        assert {room["id"] for room in listed} == set(rooms)


async def test_a_runtime_room_cannot_take_an_id_of_a_family(server, probe):
    dialogue, srv = server
    alice = await probe(ws_as(srv, "alice"))
    error = await refused(alice, "create_room", room="doc:12", name="mine")
    assert error["code"] == "ROOM_EXISTS"
    with pytest.raises(DialogueError) as caught:
        await dialogue.create_room("dm:x:y", RoomConfig(name="taken"))
    assert caught.value.code == "ROOM_EXISTS"


async def test_a_family_declared_in_toml(tmp_path, serve, probe):
    path = tmp_path / "dialogue.toml"
    path.write_text('[rooms."dm:{a}:{b}"]\nname = "Direct messages"\nevents = ["message"]\n'
                    'members = ["a", "b"]\n')
    srv = await serve(Dialogue.from_file(path, events=[message], authenticate=authenticate))
    alice, carol = await probe(ws_as(srv, "alice")), await probe(ws_as(srv, "carol"))
    joined = await alice.request("join", room="dm:alice:zoe")
    assert joined["room"]["family"] == "dm:{a}:{b}" and joined["room"]["events"] == ["message"]
    assert (await refused(carol, "join", room="dm:alice:zoe"))["code"] == "FORBIDDEN"


async def test_an_on_handler_of_a_family_runs_for_each_instance(server, probe):
    dialogue, srv = server
    seen: list[tuple[str, int]] = []
    stop = dialogue.on("dm:{a}:{b}", message, lambda m: seen.append((m.room, m.seq)))
    try:
        alice = await probe(ws_as(srv, "alice"))
        for room in ("dm:alice:bob", "dm:alice:carol"):
            await alice.request("join", room=room)
            await alice.request("publish", room=room, event="message", data={"text": "hi"})
        await alice.request("join", room="lobby")
        await alice.request("publish", room="lobby", event="message", data={"text": "not a dm"})
    finally:
        stop()
    assert seen == [("dm:alice:bob", 1), ("dm:alice:carol", 1)]
