"""REST routes: rooms, history, publish, presence, health, OpenAPI and DI from user routes.

No ``from __future__ import annotations`` here: the user route below names a local
``Annotated`` alias, which FastAPI can only see as a real object.
"""

from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from net_helpers import bearer, http
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Identity, RoomConfig, define_event

INFO_KEYS = {"id", "name", "description", "max_size", "size", "events",
             "default_subscriptions", "channels", "created_by"}
FAMILY_KEYS = {"family", "params"}  # room families only (absent for plain rooms)


class Text(BaseModel):
    text: str = Field(min_length=1, max_length=50)


message = define_event("message", Text, history=100)
typing = define_event("typing", history=10)


def authenticate(conn: HTTPConnection) -> Identity | None:
    """``Authorization: Bearer <user>`` for REST, ``?token=<user>`` for WebSocket."""
    header = conn.headers.get("authorization", "")
    user = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
    return Identity(user or conn.query_params.get("token") or "") if (
        user or conn.query_params.get("token")) else None


def make_dialogue(**settings: Any) -> Dialogue:
    rooms = {
        "chat": RoomConfig(name="Chat", description="talk", events=[message, typing],
                           default_subscriptions=["message"], max_size=10),
        "open": RoomConfig(name="Open"),
    }
    return Dialogue(rooms=rooms, events=[message, typing], authenticate=authenticate, **settings)


ALICE = bearer("alice")
BOB = bearer("bob")


async def start(serve, **settings: Any) -> tuple[Dialogue, Any]:
    dialogue = make_dialogue(**settings)
    return dialogue, await serve(dialogue)


def ws_as(srv, user: str, path: str = "/ws") -> str:
    return srv.ws_url(path) + "?token=" + user


def assert_error(response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


# --- rooms ------------------------------------------------------------------------------

async def test_get_rooms_lists_config_rooms_with_info_objects(serve, probe):
    _, srv = await start(serve)
    member = await probe(ws_as(srv, "carol"))
    await member.request("join", room="chat")
    async with http(srv, headers=ALICE) as client:
        response = await client.get("/rooms")
    assert response.status_code == 200
    rooms = {room["id"]: room for room in response.json()["rooms"]}
    assert set(rooms) == {"chat", "open"}
    chat = rooms["chat"]
    assert set(chat) == INFO_KEYS
    assert chat == {
        "id": "chat", "name": "Chat", "description": "talk", "max_size": 10, "size": 1,
        "events": ["message", "typing"], "default_subscriptions": ["message"],
        "channels": ["websocket", "sse"], "created_by": None,
    }
    assert rooms["open"]["size"] == 0 and rooms["open"]["events"] == []


async def test_get_room_returns_info(serve):
    _, srv = await start(serve)
    async with http(srv, headers=ALICE) as client:
        response = await client.get("/rooms/open")
    assert response.status_code == 200
    assert response.json()["id"] == "open" and response.json()["name"] == "Open"
    assert set(response.json()) == INFO_KEYS


async def test_get_unknown_room_is_404_room_not_found(serve):
    _, srv = await start(serve)
    async with http(srv, headers=ALICE) as client:
        response = await client.get("/rooms/nowhere")
    error = assert_error(response, 404, "ROOM_NOT_FOUND")
    assert "nowhere" in error["message"]


async def test_post_rooms_creates_room_201_with_created_by(serve, probe):
    _, srv = await start(serve)
    watcher = await probe(ws_as(srv, "carol"))
    async with http(srv, headers=ALICE) as client:
        response = await client.post("/rooms", json={
            "room": "team-1", "name": "Team", "description": "d", "max_size": 3,
            "events": ["message"]})
        assert response.status_code == 201, response.text
        info = response.json()
        assert info["id"] == "team-1" and info["created_by"] == "alice"
        assert info["max_size"] == 3 and info["events"] == ["message"] and info["size"] == 0
        assert (await client.get("/rooms/team-1")).json()["created_by"] == "alice"
        listed = {r["id"] for r in (await client.get("/rooms")).json()["rooms"]}
    assert "team-1" in listed
    announced = await watcher.next("room_created")
    assert announced["room"]["id"] == "team-1"
    # the created room enforces its events like a config room
    member = await probe(ws_as(srv, "dave"))
    await member.request("join", room="team-1")
    bad = await member.reply("publish", room="team-1", event="typing", data={})
    assert bad["error"]["code"] == "EVENT_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"room": "chat", "name": "Again"}, 409, "ROOM_EXISTS"),
        ({"room": "bad id!", "name": "X"}, 400, "BAD_REQUEST"),
        ({"room": "x" * 200, "name": "X"}, 400, "BAD_REQUEST"),
        ({"room": "r1", "name": "X", "events": ["undefined-event"]}, 403, "EVENT_NOT_ALLOWED"),
        ({"room": "r1"}, 400, "BAD_REQUEST"),
        ({"room": "r1", "name": "X", "max_size": 0}, 400, "BAD_REQUEST"),
    ],
)
async def test_post_rooms_errors(serve, body, status, code):
    _, srv = await start(serve)
    async with http(srv, headers=ALICE) as client:
        response = await client.post("/rooms", json=body)
    assert_error(response, status, code)


async def test_post_rooms_forbidden_when_client_rooms_are_off(serve):
    _, srv = await start(serve, allow_client_rooms=False)
    async with http(srv, headers=ALICE) as client:
        response = await client.post("/rooms", json={"room": "r1", "name": "X"})
    assert_error(response, 403, "FORBIDDEN")


async def test_delete_own_room_204_and_members_are_told(serve, probe):
    _, srv = await start(serve)
    member = await probe(ws_as(srv, "carol"))
    async with http(srv, headers=ALICE) as client:
        assert (await client.post("/rooms", json={"room": "tmp", "name": "Tmp"})).status_code == 201
        await member.request("join", room="tmp")
        response = await client.delete("/rooms/tmp")
        assert response.status_code == 204
        assert response.content == b""
        assert_error(await client.get("/rooms/tmp"), 404, "ROOM_NOT_FOUND")
    deleted = await member.next("room_deleted")
    assert deleted["room"] == "tmp"


async def test_delete_another_users_room_is_403(serve):
    _, srv = await start(serve)
    async with http(srv) as client:
        await client.post("/rooms", headers=ALICE, json={"room": "alices", "name": "A"})
        response = await client.delete("/rooms/alices", headers=BOB)
        assert_error(response, 403, "FORBIDDEN")
        assert (await client.get("/rooms/alices", headers=BOB)).status_code == 200


async def test_delete_config_room_is_403(serve):
    _, srv = await start(serve)
    async with http(srv, headers=ALICE) as client:
        assert_error(await client.delete("/rooms/chat"), 403, "FORBIDDEN")
        assert (await client.get("/rooms/chat")).status_code == 200


async def test_delete_unknown_room_is_404(serve):
    _, srv = await start(serve)
    async with http(srv, headers=ALICE) as client:
        assert_error(await client.delete("/rooms/ghost"), 404, "ROOM_NOT_FOUND")


# --- history ------------------------------------------------------------------------------

async def publish_texts(dialogue: Dialogue, count: int) -> None:
    for i in range(1, count + 1):
        await dialogue.trigger("chat", message, {"text": f"m{i}"})


async def test_history_newest_page_and_position(serve):
    dialogue, srv = await start(serve)
    await publish_texts(dialogue, 5)
    async with http(srv, headers=ALICE) as client:
        response = await client.get("/rooms/chat/history", params={"limit": 2})
    assert response.status_code == 200
    body = response.json()
    assert [e["seq"] for e in body["events"]] == [4, 5]
    assert body["events"][0] == {**body["events"][0], "op": "event", "room": "chat",
                                 "event": "message", "data": {"text": "m4"}, "from": "server"}
    assert body["position"]["seq"] == 5 and isinstance(body["position"]["epoch"], str)


async def test_history_default_returns_all_in_ascending_order(serve):
    dialogue, srv = await start(serve)
    await publish_texts(dialogue, 3)
    async with http(srv, headers=ALICE) as client:
        body = (await client.get("/rooms/chat/history")).json()
    assert [e["data"]["text"] for e in body["events"]] == ["m1", "m2", "m3"]


async def test_history_after_pages_forward(serve):
    dialogue, srv = await start(serve)
    await publish_texts(dialogue, 6)
    async with http(srv, headers=ALICE) as client:
        first = (await client.get("/rooms/chat/history", params={"after": 0, "limit": 2})).json()
        second = (await client.get("/rooms/chat/history", params={"after": 2, "limit": 2})).json()
        last = (await client.get("/rooms/chat/history", params={"after": 5, "limit": 2})).json()
    assert [e["seq"] for e in first["events"]] == [1, 2]
    assert [e["seq"] for e in second["events"]] == [3, 4]
    assert [e["seq"] for e in last["events"]] == [6]


async def test_history_before_pages_backward(serve):
    dialogue, srv = await start(serve)
    await publish_texts(dialogue, 6)
    async with http(srv, headers=ALICE) as client:
        page = (await client.get("/rooms/chat/history", params={"before": 4, "limit": 2})).json()
        rest = (await client.get("/rooms/chat/history", params={"before": 2})).json()
    assert [e["seq"] for e in page["events"]] == [2, 3]
    assert [e["seq"] for e in rest["events"]] == [1]


async def test_history_filters_by_event(serve):
    dialogue, srv = await start(serve)
    await dialogue.trigger("chat", message, {"text": "a"})
    await dialogue.trigger("chat", typing, {"who": "x"})
    await dialogue.trigger("chat", message, {"text": "b"})
    async with http(srv, headers=ALICE) as client:
        body = (await client.get("/rooms/chat/history", params={"event": "typing"})).json()
    assert [(e["seq"], e["event"]) for e in body["events"]] == [(2, "typing")]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"limit": "many"},
                                    {"before": -1}, {"after": "x"}])
async def test_history_bad_query_is_400_bad_request(serve, params):
    _, srv = await start(serve)
    async with http(srv, headers=ALICE) as client:
        response = await client.get("/rooms/chat/history", params=params)
    error = assert_error(response, 400, "BAD_REQUEST")
    assert next(iter(params)) in error["message"]


async def test_history_of_unknown_room_is_404(serve):
    _, srv = await start(serve)
    async with http(srv, headers=ALICE) as client:
        assert_error(await client.get("/rooms/ghost/history"), 404, "ROOM_NOT_FOUND")


# --- publish ------------------------------------------------------------------------------

async def test_post_event_202_with_seq_and_reaches_websocket_member(serve, probe):
    _, srv = await start(serve)
    member = await probe(ws_as(srv, "carol"))
    await member.request("join", room="chat")
    async with http(srv, headers=ALICE) as client:
        response = await client.post("/rooms/chat/events", json={
            "event": "message", "data": {"text": "from rest"}, "meta": {"k": "v"}})
    assert response.status_code == 202, response.text
    ack = response.json()
    assert ack["seq"] == 1 and isinstance(ack["ts"], int) and ack["ts"] > 1_600_000_000_000
    event = await member.next("event")
    assert event == {"op": "event", "room": "chat", "event": "message",
                     "data": {"text": "from rest"}, "from": "alice", "ts": ack["ts"],
                     "seq": 1, "meta": {"k": "v"}}


async def test_post_event_validation_failed_422_with_details(serve):
    _, srv = await start(serve)
    async with http(srv, headers=ALICE) as client:
        response = await client.post("/rooms/chat/events",
                                     json={"event": "message", "data": {"text": ""}})
        missing = await client.post("/rooms/chat/events", json={"event": "message", "data": {}})
    error = assert_error(response, 422, "VALIDATION_FAILED")
    assert error["details"][0]["loc"] == ["text"]
    assert error["details"][0]["type"] == "string_too_short"
    assert assert_error(missing, 422, "VALIDATION_FAILED")["details"][0]["type"] == "missing"


async def test_post_event_not_listed_is_403_event_not_allowed(serve):
    _, srv = await start(serve)
    async with http(srv, headers=ALICE) as client:
        response = await client.post("/rooms/chat/events", json={"event": "shout", "data": 1})
    error = assert_error(response, 403, "EVENT_NOT_ALLOWED")
    assert "shout" in error["message"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'{"data": 1}', b'{"event": 5}', b'{"event": "message", "meta": 3}', b""],
)
async def test_post_event_malformed_body_is_400_bad_request(serve, content):
    _, srv = await start(serve)
    async with http(srv, headers=ALICE) as client:
        response = await client.post("/rooms/chat/events", content=content,
                                     headers={"content-type": "application/json"})
    error = assert_error(response, 400, "BAD_REQUEST")
    assert isinstance(error.get("details"), list) and error["details"]


async def test_a_body_that_is_not_utf8_is_400_bad_request(serve):
    _, srv = await start(serve)
    async with http(srv, headers=ALICE) as client:
        for path in ("/rooms", "/rooms/chat/events"):
            response = await client.post(path, content=b"\xa8\x01",
                                         headers={"content-type": "application/json"})
            error = assert_error(response, 400, "BAD_REQUEST")
            assert "parsing the body" in error["message"]


async def test_an_http_exception_of_a_dependency_keeps_its_status_in_the_protocols_shape(serve):
    def api_key(x_api_key: Annotated[str | None, Header()] = None) -> str:
        if x_api_key == "gone":
            raise HTTPException(410, "that key was withdrawn")
        if x_api_key != "sesame":
            raise HTTPException(403, "bad api key", headers={"X-Why": "key"})
        return x_api_key

    async def authenticate(key: Annotated[str, Depends(api_key)]) -> Identity:
        return Identity("keyholder")

    srv = await serve(Dialogue(rooms={"open": RoomConfig(name="Open")}, authenticate=authenticate))
    async with http(srv) as client:
        refused = await client.get("/rooms", headers={"X-Api-Key": "guess"})
        withdrawn = await client.get("/rooms", headers={"X-Api-Key": "gone"})
        allowed = await client.get("/rooms", headers={"X-Api-Key": "sesame"})
    error = assert_error(refused, 403, "FORBIDDEN")
    assert error["message"] == "bad api key" and refused.headers["X-Why"] == "key"
    assert assert_error(withdrawn, 410, "BAD_REQUEST")["message"] == "that key was withdrawn"
    assert allowed.status_code == 200


async def test_post_event_to_unknown_room_is_404(serve):
    _, srv = await start(serve)
    async with http(srv, headers=ALICE) as client:
        response = await client.post("/rooms/ghost/events", json={"event": "message", "data": {}})
    assert_error(response, 404, "ROOM_NOT_FOUND")


async def test_post_event_data_too_large_is_413(serve):
    _, srv = await start(serve, max_message_size=1024)
    async with http(srv, headers=ALICE) as client:
        response = await client.post("/rooms/open/events",
                                     json={"event": "blob", "data": "x" * 2000})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_post_event_idempotency_key_delivers_once(serve, probe):
    _, srv = await start(serve)
    member = await probe(ws_as(srv, "carol"))
    await member.request("join", room="open")
    body = {"event": "note", "data": 1, "idempotency_key": "k-1"}
    async with http(srv, headers=ALICE) as client:
        first = (await client.post("/rooms/open/events", json=body)).json()
        again = (await client.post("/rooms/open/events", json=body)).json()
    assert first["seq"] == again["seq"] == 1
    assert first["duplicate"] is False and again["duplicate"] is True
    await member.next("event")
    assert await member.nothing("event", 0.2)


# --- presence, health, readiness ------------------------------------------------------------

async def test_presence_lists_websocket_members(serve, probe):
    _, srv = await start(serve)
    carol = await probe(ws_as(srv, "carol"))
    dave = await probe(ws_as(srv, "dave"))
    await carol.request("join", room="chat")
    await dave.request("join", room="chat")
    async with http(srv, headers=ALICE) as client:
        body = (await client.get("/rooms/chat/presence")).json()
        empty = (await client.get("/rooms/open/presence")).json()
        missing = await client.get("/rooms/ghost/presence")
    assert body["count"] == 2
    assert sorted(body["users"], key=lambda u: u["user_id"]) == [
        {"user_id": "carol", "client_id": carol.hello["client_id"]},
        {"user_id": "dave", "client_id": dave.hello["client_id"]},
    ]
    assert empty == {"count": 0, "users": []}
    assert_error(missing, 404, "ROOM_NOT_FOUND")


async def test_presence_drops_a_member_who_leaves(serve, probe):
    _, srv = await start(serve)
    carol = await probe(ws_as(srv, "carol"))
    await carol.request("join", room="chat")
    await carol.request("leave", room="chat")
    async with http(srv, headers=ALICE) as client:
        assert (await client.get("/rooms/chat/presence")).json()["count"] == 0


async def test_health_is_200_without_credentials(serve):
    _, srv = await start(serve)
    async with http(srv) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_ready_is_200_while_running(serve):
    _, srv = await start(serve)
    async with http(srv) as client:
        response = await client.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["started"] is True and body["checks"]["broker"] is True


# --- OpenAPI --------------------------------------------------------------------------------

REST_PATHS = {
    "/rooms": {"get": ("200", "RoomList"), "post": ("201", "RoomInfo")},
    "/rooms/{room}": {"get": ("200", "RoomInfo"), "delete": ("204", None)},
    "/rooms/{room}/history": {"get": ("200", "HistoryPage")},
    "/rooms/{room}/events": {"post": ("202", "PublishAck")},
    "/rooms/{room}/presence": {"get": ("200", "PresenceResult")},
    "/health": {"get": ("200", "Health")},
    "/ready": {"get": ("200", "Health")},
}
DOCUMENTED_ERRORS = {
    ("/rooms", "get"): {"401"},
    ("/rooms", "post"): {"400", "401", "403", "409"},
    ("/rooms/{room}", "get"): {"401", "404"},
    ("/rooms/{room}", "delete"): {"401", "403", "404"},
    ("/rooms/{room}/history", "get"): {"400", "401", "404"},
    ("/rooms/{room}/events", "post"): {"400", "401", "403", "404", "413", "422", "429", "503"},
    ("/rooms/{room}/presence", "get"): {"401", "404"},
}


def schema_ref(response: dict[str, Any]) -> str | None:
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    if not schema:
        return None
    return str(schema.get("$ref", "")).rsplit("/", 1)[-1] or None


async def openapi(serve, prefix: str = "/dialogue") -> dict[str, Any]:
    srv = await serve(make_dialogue(), prefix=prefix)
    async with http(srv) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


async def test_openapi_lists_paths_with_response_models(serve):
    schema = await openapi(serve)
    for path, ops in REST_PATHS.items():
        documented = schema["paths"].get("/dialogue" + path)
        assert documented is not None, f"{path} missing from OpenAPI"
        for method, (status, model) in ops.items():
            assert method in documented, f"{method.upper()} {path} missing"
            assert status in documented[method]["responses"], (path, method)
            assert schema_ref(documented[method]["responses"][status]) == model, (path, method)
    components = schema["components"]["schemas"]
    for name in ("RoomInfo", "RoomList", "HistoryPage", "PublishAck", "PresenceResult",
                 "ErrorBody", "CreateRoomBody", "PublishBody"):
        assert name in components
    assert set(components["RoomInfo"]["properties"]) == INFO_KEYS | FAMILY_KEYS
    assert set(components["ErrorBody"]["properties"]) == {"error"}


async def test_openapi_documents_error_responses_with_error_body(serve):
    schema = await openapi(serve)
    for (path, method), statuses in DOCUMENTED_ERRORS.items():
        responses = schema["paths"]["/dialogue" + path][method]["responses"]
        for status in statuses:
            assert status in responses, (path, method, status)
            assert schema_ref(responses[status]) == "ErrorBody", (path, method, status)


async def test_openapi_documents_request_bodies(serve):
    schema = await openapi(serve)
    post_room = schema["paths"]["/dialogue/rooms"]["post"]["requestBody"]
    post_event = schema["paths"]["/dialogue/rooms/{room}/events"]["post"]["requestBody"]
    assert schema_ref(post_room) == "CreateRoomBody"
    assert schema_ref(post_event) == "PublishBody"
    room = schema["components"]["schemas"]["CreateRoomBody"]["properties"]["room"]
    assert room["pattern"] == "^[A-Za-z0-9_.:@\\-]+$"  # what the route accepts, for clients


async def test_openapi_documents_no_error_the_routes_never_send(serve):
    schema = await openapi(serve)
    for path in REST_PATHS:
        for method, operation in schema["paths"]["/dialogue" + path].items():
            for status, response in operation["responses"].items():
                code = int(status) if status.isdigit() else 400  # "4XX"
                if code < 400 or (path, status) == ("/ready", "503"):
                    continue
                assert schema_ref(response) == "ErrorBody", (method.upper(), path, status)
            assert "422" not in operation["responses"] or path.endswith("/events"), path


# --- DI from user routes, prefixes ----------------------------------------------------------

async def test_user_route_triggers_through_dependency(serve, probe):
    dialogue = make_dialogue()
    app = FastAPI()
    app.include_router(dialogue.router, prefix="/rt")
    DialogueDep = Annotated[Dialogue, Depends(dialogue.dependency)]

    @app.post("/orders/{order_id}/ship")
    async def ship(order_id: str, dlg: DialogueDep) -> dict[str, int]:
        assert dlg is dialogue
        sent = await dlg.trigger("chat", "message", {"text": f"order {order_id} shipped"},
                                 meta={"order": order_id})
        return {"seq": sent.seq}

    srv = await serve(app)
    member = await probe(ws_as(srv, "carol", "/rt/ws"))
    await member.request("join", room="chat")
    async with http(srv) as client:
        response = await client.post("/orders/o-7/ship")
    assert response.status_code == 200 and response.json() == {"seq": 1}
    event = await member.next("event")
    assert event["data"] == {"text": "order o-7 shipped"}
    assert event["from"] == "server" and event["meta"] == {"order": "o-7"} and event["seq"] == 1


async def test_router_mounted_under_prefix(serve, probe):
    srv = await serve(make_dialogue(), prefix="/api/v1/rt")
    async with http(srv, headers=ALICE) as client:
        assert (await client.get("/api/v1/rt/rooms")).status_code == 200
        assert (await client.get("/api/v1/rt/health")).status_code == 200
        assert (await client.get("/rooms")).status_code == 404
        sent = await client.post("/api/v1/rt/rooms/open/events", json={"event": "e", "data": 1})
        assert sent.status_code == 202
    p = await probe(ws_as(srv, "carol", "/api/v1/rt/ws"))
    assert p.hello["user_id"] == "carol"
    joined = await p.request("join", room="open", history=5)
    assert [e["seq"] for e in joined["events"]] == [1]
