"""``GET /asyncapi.json``: a valid AsyncAPI 3.0 document (checked against the official
JSON Schema, vendored in tests/data) that describes what the server really speaks:
every op of the operation table, the replies and error codes, the server's frames,
the rooms and their events' pydantic schemas, and the SSE channel."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from helpers import authenticate, ws_as
from pydantic import BaseModel, ConfigDict, Field

from dialogue_fastapi import Dialogue, RoomConfig, define_event
from dialogue_fastapi.contract.asyncapi import AsyncApiCache, build_document
from dialogue_fastapi.core.errors import ERRORS_BY_CODE
from dialogue_fastapi.rooms.registry import Room, RoomRegistry
from dialogue_fastapi.websocket.commands import OPERATIONS

SPEC = Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json"
PREFIX = "/dialogue"


class Author(BaseModel):
    name: str = Field(max_length=40)


class Message(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    author: Author | None = None


def other_author() -> type[BaseModel]:
    class Author(BaseModel):  # same $defs name as the one above, another shape: must not clash
        handle: int

    return Author


message = define_event("message", Message, description="A chat line", history=10)
typing = define_event("typing")
score = define_event("score", dict[str, other_author()])  # type: ignore[misc]


def make_dialogue() -> Dialogue:
    return Dialogue(
        rooms={
            "chat": RoomConfig(name="Chat", events=[message, typing]),
            "open": RoomConfig(name="Open"),  # events=[]: any event name
            "ws-only": RoomConfig(name="WS", events=[score], channels=["websocket"]),
        },
        events=[message, typing, score], allow_anonymous=True,
    )


@cache
def validator() -> Any:
    schema = json.loads(SPEC.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def spec_errors(doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300]
            for e in validator().iter_errors(doc)]


def resolve(doc: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = doc
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def payload(doc: dict[str, Any], message_ref: str) -> dict[str, Any]:
    message = resolve(doc, message_ref)
    if "$ref" in message:
        message = resolve(doc, message["$ref"])
    body: dict[str, Any] = message["payload"]
    return resolve(doc, body["$ref"]) if "$ref" in body else body


def matches(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> bool:
    """Does ``value`` satisfy ``schema`` (refs into the document's components)?"""
    root = {**schema, "components": doc["components"]}
    return jsonschema.Draft202012Validator(root).is_valid(value)


@pytest.fixture
async def served(serve: Any) -> tuple[Dialogue, Any, dict[str, Any]]:
    dialogue = make_dialogue()
    srv = await serve(dialogue, prefix=PREFIX)
    async with httpx.AsyncClient(base_url=srv.http_url) as client:
        response = await client.get(f"{PREFIX}/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    return dialogue, srv, response.json()


async def test_document_is_valid_asyncapi_3(served: Any) -> None:
    _, srv, doc = served
    assert doc["asyncapi"] == "3.0.0"
    assert spec_errors(doc) == []
    for pointer in refs(doc):  # the JSON Schema cannot check that refs resolve
        resolve(doc, pointer)
    for op_id, operation in doc["operations"].items():  # messages of an operation: its channel's
        channel = operation["channel"]["$ref"]
        for msg in operation["messages"] + operation.get("reply", {}).get("messages", []):
            assert msg["$ref"].startswith(channel + "/messages/"), (op_id, msg)
    servers = doc["servers"]
    assert servers["websocket"] == {**servers["websocket"], "host": f"127.0.0.1:{srv.port}",
                                    "pathname": PREFIX, "protocol": "ws"}
    assert servers["http"]["protocol"] == "http"
    assert doc["channels"]["websocket"]["address"] == "/ws"
    assert doc["channels"]["sse"]["address"] == "/sse"


async def test_validator_rejects_a_broken_document(served: Any) -> None:
    doc = copy.deepcopy(served[2])
    del doc["operations"]["join"]["channel"]
    doc["channels"]["websocket"]["adress"] = "/ws"
    assert len(spec_errors(doc)) >= 2


async def test_every_operation_is_a_send_with_replies(served: Any) -> None:
    doc = served[2]
    operations = doc["operations"]
    for op, (model, _summary) in OPERATIONS.items():
        operation = operations[op]
        assert operation["action"] == "send"
        schema = payload(doc, operation["messages"][0]["$ref"])
        assert schema["properties"]["op"]["const"] == op
        assert schema["properties"]["id"]["type"] == "integer"
        assert "op" in schema["required"] and "id" not in schema["required"]
        assert set(model.model_fields) <= set(schema["properties"])
        replies = [payload(doc, m["$ref"]) for m in operation["reply"]["messages"]]
        assert [r["properties"]["ok"]["const"] for r in replies] == [True, False]
    assert {k for k, o in operations.items() if o["action"] == "send"} == set(OPERATIONS)
    error = doc["components"]["schemas"]["Error"]
    assert resolve(doc, error["properties"]["code"]["$ref"])["enum"] == list(ERRORS_BY_CODE)
    join = payload(doc, operations["join"]["messages"][0]["$ref"])
    assert matches(doc, join, {"op": "join", "id": 1, "room": "chat", "since": {"seq": 3, "epoch": "e"}})
    assert not matches(doc, join, {"op": "join", "id": 1, "room": "chat", "history": 5000})
    assert not matches(doc, join, {"op": "leave", "room": "chat"})


async def test_server_frames_are_receive_operations(served: Any) -> None:
    doc = served[2]
    received = {payload(doc, m["$ref"])["properties"]["op"]["const"]
                for o in doc["operations"].values() if o["action"] == "receive"
                and o["channel"]["$ref"] == "#/channels/websocket" for m in o["messages"]}
    assert received >= {"hello", "event", "direct", "presence_join", "presence_leave",
                        "room_created", "room_deleted", "error", "disconnect"}
    sse = doc["operations"]["sse.receive.dialogue"]
    assert {payload(doc, m["$ref"])["properties"]["op"]["const"] for m in sse["messages"]} >= {
        "hello", "recover_failed", "disconnect"}


def room_events(doc: dict[str, Any], op_id: str) -> dict[tuple[str, str | None], dict[str, Any]]:
    """(room, event or None for any) -> the envelope payload, of the room-pinned messages."""
    found = {}
    for m in doc["operations"][op_id]["messages"]:
        body = payload(doc, m["$ref"])
        room = body["properties"]["room"].get("const")
        if room is not None:
            found[(room, body["properties"]["event"].get("const"))] = body
    return found


async def test_rooms_and_event_schemas(served: Any) -> None:
    doc = served[2]
    events = room_events(doc, "receive.event")
    assert set(events) == {("chat", "message"), ("chat", "typing"), ("open", None),
                           ("ws-only", "score")}
    data = events[("chat", "message")]["properties"]["data"]
    assert data["properties"]["text"]["maxLength"] == 2000
    assert data["properties"]["text"]["minLength"] == 1
    assert "$defs" not in json.dumps(doc)  # hoisted into components/schemas, refs rewritten
    author = json.dumps(data["properties"]["author"])
    key = author.split("#/components/schemas/")[1].split('"')[0]
    assert doc["components"]["schemas"][key]["properties"]["name"]["maxLength"] == 40
    other = json.dumps(events[("ws-only", "score")]["properties"]["data"])
    other_key = other.split("#/components/schemas/")[1].split('"')[0]
    assert other_key != key and "handle" in doc["components"]["schemas"][other_key]["properties"]
    # the room without events takes any event name and any data
    any_event = events[("open", None)]
    assert any_event["properties"]["event"] == {"type": "string"}
    assert any_event["properties"]["data"] == {}
    envelope = {"op": "event", "room": "open", "event": "whatever", "data": [1, {"x": None}],
                "from": "bob", "ts": 1, "seq": 1, "meta": {}}
    assert matches(doc, any_event, envelope)
    chat = events[("chat", "message")]
    good = {**envelope, "room": "chat", "event": "message", "data": {"text": "hi"}}
    assert matches(doc, chat, good)
    assert not matches(doc, chat, {**good, "data": {"text": "x" * 2001}})
    assert not matches(doc, chat, {**good, "data": {"text": "hi", "author": {"name": "n" * 41}}})
    # SSE: the events of the rooms that allow it
    assert set(room_events(doc, "sse.receive.event")) == {
        ("chat", "message"), ("chat", "typing"), ("open", None)}


async def test_document_matches_real_frames_and_follows_runtime_rooms(served: Any, probe: Any) -> None:
    dialogue, srv, doc = served
    server = doc["servers"]["websocket"]
    url = f"{server['protocol']}://{server['host']}{server['pathname']}{doc['channels']['websocket']['address']}"
    p = await probe(url)
    hello = doc["components"]["schemas"]["Hello"]
    assert matches(doc, hello, p.hello)
    await p.request("join", room="chat")
    await p.request("publish", room="chat", event="message", data={"text": "hi"})
    frame = await p.next("event")
    assert matches(doc, room_events(doc, "receive.event")[("chat", "message")], frame)
    reply = await p.reply("publish", room="chat", event="message", data={"text": ""})
    assert matches(doc, doc["components"]["schemas"]["ReplyError"], reply)

    await dialogue.create_room("later", RoomConfig(name="Later", events=[message]))
    async with httpx.AsyncClient(base_url=srv.http_url) as client:
        doc = (await client.get(f"{PREFIX}/asyncapi.json")).json()
    assert ("later", "message") in room_events(doc, "receive.event")
    assert spec_errors(doc) == []


def test_odd_room_and_event_names_get_safe_keys() -> None:
    odd = define_event("a b/c~d", Message)
    rooms = [Room("dm:alice@x", RoomConfig(name="DM", events=[odd])),
             Room("dm_alice_x", RoomConfig(name="DM2", events=[odd]))]
    doc = build_document(rooms, scheme="https", host="example.com", base="")
    assert spec_errors(doc) == []
    assert "pathname" not in doc["servers"]["websocket"]
    assert doc["servers"]["websocket"]["protocol"] == "wss"
    events = room_events(doc, "receive.event")
    assert set(events) == {("dm:alice@x", "a b/c~d"), ("dm_alice_x", "a b/c~d")}
    for pointer in refs(doc):
        resolve(doc, pointer)


class Opaque:
    pass


class Holder(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: Opaque


def test_an_event_type_without_json_schema_is_described_not_fatal() -> None:
    odd = define_event("odd", Holder)
    doc = build_document([Room("r", RoomConfig(name="R", events=[odd, message]))],
                         scheme="http", host="h", base="/x")
    assert spec_errors(doc) == []
    events = room_events(doc, "receive.event")
    assert "no JSON Schema" in events[("r", "odd")]["properties"]["data"]["description"]
    assert events[("r", "message")]["properties"]["data"]["properties"]["text"]["maxLength"] == 2000


def family_dialogue() -> Dialogue:
    return Dialogue(rooms={
        "lobby": RoomConfig(name="Lobby"),
        "dm:{a}:{b}": RoomConfig(name="Direct messages", events=[message], members=["a", "b"]),
        "doc:{doc_id:int}": RoomConfig(name="Document", channels=["websocket"]),
    }, events=[message], authenticate=authenticate)


def family_channels(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["address"]: c for c in doc["channels"].values() if c["address"] not in ("/ws", "/sse")}


async def test_room_families_are_parameterized_channels(serve: Any, probe: Any) -> None:
    srv = await serve(family_dialogue())
    async with httpx.AsyncClient(base_url=srv.http_url) as client:
        doc = (await client.get("/asyncapi.json")).json()
    assert spec_errors(doc) == []
    for pointer in refs(doc):
        resolve(doc, pointer)
    families = family_channels(doc)
    assert set(families) == {"dm:{a}:{b}", "doc:{doc_id}"}  # AsyncAPI has no {name:int}
    for channel in families.values():  # each {name} of the address is a parameter, and back
        assert set(re.findall(r"\{([^}]*)\}", channel["address"])) == set(channel["parameters"])
    for key in doc["channels"]:  # keys are valid component names
        assert jsonschema.Draft7Validator({"pattern": r"^[\w\d\.\-_]+$"}).is_valid(key), key
    dm, document = families["dm:{a}:{b}"], families["doc:{doc_id}"]
    assert document["x-dialogue-family"] == "doc:{doc_id:int}"  # the pattern as declared
    assert set(dm["parameters"]) == {"a", "b"} and set(document["parameters"]) == {"doc_id"}
    assert "only that user (and the other member, b) may join" in dm["parameters"]["a"]["description"]
    assert "ascending order" in dm["parameters"]["b"]["description"]
    assert dm["parameters"]["a"]["examples"] == ["alice"] and dm["parameters"]["b"]["examples"] == ["bob"]
    assert document["parameters"]["doc_id"] == {"description": "digits only", "examples": ["42"]}
    assert dm["title"] == "Direct messages" and "dm:alice:bob" in dm["description"]
    assert document["servers"] == [{"$ref": "#/servers/websocket"}]  # channels=["websocket"]
    # the family's events: on its channel (with a receive operation) and on the transports
    key = next(k for k, c in doc["channels"].items() if c is dm)
    operation = doc["operations"][f"receive.{key}"]
    assert operation["channel"] == {"$ref": f"#/channels/{key}"}
    [dm_message] = [payload(doc, m["$ref"]) for m in operation["messages"]]
    assert dm_message["properties"]["event"]["const"] == "message"
    assert dm_message["properties"]["data"]["properties"]["text"]["maxLength"] == 2000
    ws_events = [payload(doc, m["$ref"]) for m in doc["operations"]["receive.event"]["messages"]]
    assert dm_message in ws_events
    assert dm_message in [payload(doc, m["$ref"]) for m in doc["operations"]["sse.receive.event"]["messages"]]
    assert ("lobby", None) in room_events(doc, "receive.event")  # plain rooms as before
    # the envelope's room is any id of the family, and only those
    good = {"op": "event", "room": "dm:alice:bob", "event": "message", "data": {"text": "hi"},
            "from": "alice", "ts": 1, "seq": 1}
    assert matches(doc, dm_message, good)
    assert not matches(doc, dm_message, {**good, "room": "dm:alice"})
    assert not matches(doc, dm_message, {**good, "room": "lobby"})
    [doc_any] = [payload(doc, m["$ref"]) for m in document["messages"].values()]  # any event
    assert matches(doc, doc_any, {**good, "room": "doc:7", "event": "edit", "data": [1]})
    assert not matches(doc, doc_any, {**good, "room": "doc:seven"})

    # nothing per instance: the document is the same once dm:alice:bob is used
    alice = await probe(ws_as(srv, "alice"))
    await alice.request("join", room="dm:alice:bob")
    await alice.request("publish", room="dm:alice:bob", event="message", data={"text": "hi"})
    assert matches(doc, dm_message, await alice.next("event"))
    async with httpx.AsyncClient(base_url=srv.http_url) as client:
        again = (await client.get("/asyncapi.json")).json()
    assert again == doc
    keys = [*doc["channels"], *doc["operations"], *doc["components"]["messages"]]
    assert not [k for k in keys if "alice" in k]


def test_a_family_is_described_once_and_instances_add_nothing() -> None:
    registry = RoomRegistry({"dm:{a}:{b}": RoomConfig(name="DM", members=["a", "b"]),
                             "x:{n:int}:y": RoomConfig(name="X", events=[message]),
                             "x.n.y:{z}": RoomConfig(name="Y")})
    families = registry.families()
    plain = build_document(families, scheme="http", host="h", base="")
    instance = registry.get("dm:alice:bob")
    assert build_document([*families, instance], scheme="http", host="h", base="") == plain
    assert spec_errors(plain) == []
    assert set(family_channels(plain)) == {"dm:{a}:{b}", "x:{n}:y", "x.n.y:{z}"}
    assert len(plain["channels"]) == 5  # unique keys even where patterns read alike
    z = family_channels(plain)["x.n.y:{z}"]["parameters"]["z"]
    assert "no ':'" in z["description"] and z["examples"] == ["my-z"]


def test_the_cache_follows_the_registry_families_without_rebuilding() -> None:
    registry = RoomRegistry({"lobby": RoomConfig(name="Lobby"),
                             "dm:{a}:{b}": RoomConfig(name="DM", members=["a", "b"])})
    cache = AsyncApiCache(registry.all, registry.families)
    body = cache.render("http", "h", "")
    assert b'"dm:{a}:{b}"' in body
    registry.get("dm:alice:bob")
    assert cache.render("http", "h", "") is body  # families() makes new Room objects each time
