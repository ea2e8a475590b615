"""Bad input of any kind gets an error code, never a crash or a hung socket."""

from __future__ import annotations

from typing import Any

import pytest
from net_helpers import drain_frames, dumps, nested
from pydantic import BaseModel

from dialogue_fastapi import Dialogue, RoomConfig, define_event
from dialogue_fastapi.testing import ProbeError, WsProbe

LIMIT = 1024


class Text(BaseModel):
    text: str


message = define_event("message", Text, history=10)


def make_dialogue(**settings: Any) -> Dialogue:
    settings.setdefault("allow_anonymous", True)
    return Dialogue(rooms={"chat": RoomConfig(name="Chat", events=[message])}, **settings)


async def open_pair(serve, probe, **settings: Any) -> tuple[Any, WsProbe]:
    srv = await serve(make_dialogue(**settings))
    return srv, await probe(srv.ws_url("/ws"))


async def error_frame(p: WsProbe) -> dict[str, Any]:
    frame = await p.next("error", timeout=2)
    assert set(frame) == {"op", "error"}, frame
    return dict(frame["error"])


async def still_alive(p: WsProbe) -> None:
    assert await p.request("ping", timeout=2) == {}


# --- malformed frames ------------------------------------------------------------

async def test_malformed_json_gets_error_frame_and_connection_keeps_working(serve, probe):
    _, p = await open_pair(serve, probe)
    await p.send_raw('{"op": "ping", "id": 1')
    error = await error_frame(p)
    assert error["code"] == "BAD_REQUEST"
    assert "JSON" in error["message"]
    await still_alive(p)
    await p.send_raw("not json at all")
    assert (await error_frame(p))["code"] == "BAD_REQUEST"
    await still_alive(p)


@pytest.mark.parametrize("text", ["[1, 2]", '[{"op": "ping", "id": 1}]', '"ping"', "42", "null", "true"])
async def test_non_object_json_is_bad_request(serve, probe, text):
    _, p = await open_pair(serve, probe)
    await p.send_raw(text)
    error = await error_frame(p)
    assert error["code"] == "BAD_REQUEST"
    assert "object" in error["message"]
    await still_alive(p)


async def test_missing_op_with_id_gets_reply_naming_op(serve, probe):
    _, p = await open_pair(serve, probe)
    await p.send_raw(dumps({"id": 77, "room": "chat"}))
    reply = await p.next(timeout=2)
    assert reply["id"] == 77 and reply["ok"] is False
    assert reply["error"]["code"] == "BAD_REQUEST"
    assert "op" in reply["error"]["message"]
    await still_alive(p)


async def test_missing_op_without_id_gets_error_frame(serve, probe):
    _, p = await open_pair(serve, probe)
    await p.send_raw(dumps({"room": "chat"}))
    error = await error_frame(p)
    assert error["code"] == "BAD_REQUEST"
    assert "'op'" in error["message"]
    await still_alive(p)


async def test_unknown_op_with_id_gets_reply_naming_the_op(serve, probe):
    _, p = await open_pair(serve, probe)
    reply = await p.reply("teleport", room="chat")
    assert reply["ok"] is False
    assert reply["error"]["code"] == "BAD_REQUEST"
    assert "teleport" in reply["error"]["message"]
    await still_alive(p)


async def test_unknown_op_without_id_gets_error_frame(serve, probe):
    _, p = await open_pair(serve, probe)
    await p.send_raw(dumps({"op": "teleport"}))
    error = await error_frame(p)
    assert error["code"] == "BAD_REQUEST" and "teleport" in error["message"]
    await still_alive(p)


async def test_non_string_op_is_bad_request(serve, probe):
    _, p = await open_pair(serve, probe)
    await p.send_raw(dumps({"op": {"name": "ping"}, "id": 5}))
    reply = await p.next(timeout=2)
    assert reply["id"] == 5 and reply["error"]["code"] == "BAD_REQUEST"
    await still_alive(p)


# --- fields ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("op", "fields", "loc"),
    [
        ("join", {}, ["room"]),
        ("join", {"room": 5}, ["room"]),
        ("join", {"room": "chat", "history": "x"}, ["history"]),
        ("join", {"room": "chat", "history": True}, ["history"]),
        ("join", {"room": "chat", "history": 5000}, ["history"]),
        ("join", {"room": "chat", "subscriptions": "message"}, ["subscriptions"]),
        ("join", {"room": "chat", "since": {"seq": "1", "epoch": "e"}}, ["since", "seq"]),
        ("join", {"room": "chat", "since": {"seq": 1}}, ["since", "epoch"]),
        ("publish", {"room": "chat", "data": {"text": "hi"}}, ["event"]),
        ("publish", {"room": "chat", "event": 3, "data": {}}, ["event"]),
        ("publish", {"room": "chat", "event": "message", "meta": "m"}, ["meta"]),
        ("history", {"room": "chat", "limit": "10"}, ["limit"]),
        ("history", {"room": "chat", "limit": 5000}, ["limit"]),
        ("subscribe", {"room": "chat"}, ["events"]),
        ("unsubscribe", {"room": "chat", "events": "*"}, ["events"]),
        ("leave", {"room": ["chat"]}, ["room"]),
        ("presence", {}, ["room"]),
        ("create_room", {"room": "new"}, ["name"]),
        ("create_room", {"room": "new", "name": "New", "max_size": "10"}, ["max_size"]),
    ],
)
async def test_missing_or_wrong_typed_field_is_bad_request_naming_it(serve, probe, op, fields, loc):
    _, p = await open_pair(serve, probe)
    with pytest.raises(ProbeError) as info:
        await p.request(op, **fields)
    assert info.value.code == "BAD_REQUEST"
    assert f"field '{'.'.join(loc)}" in info.value.message
    # a union adds its member to the location: subscriptions.list[str]
    assert info.value.error["details"][0]["loc"][: len(loc)] == loc
    await still_alive(p)


@pytest.mark.parametrize("bad_id", ["abc", 1.5, True, [1], {"n": 1}])
async def test_non_integer_id_is_bad_request_naming_id(serve, probe, bad_id):
    _, p = await open_pair(serve, probe)
    await p.send_raw(dumps({"op": "ping", "id": bad_id}))
    error = await error_frame(p)
    assert error["code"] == "BAD_REQUEST"
    assert "'id'" in error["message"]
    await still_alive(p)


async def test_over_long_room_id_is_bad_request(serve, probe):
    _, p = await open_pair(serve, probe, max_room_id_length=16)
    with pytest.raises(ProbeError) as joined:
        await p.request("join", room="r" * 17)
    assert joined.value.code == "BAD_REQUEST"
    assert "16" in joined.value.message
    with pytest.raises(ProbeError) as created:
        await p.request("create_room", room="r" * 17, name="Long")
    assert created.value.code == "BAD_REQUEST"
    # at the limit it is fine
    created_ok = await p.request("create_room", room="r" * 16, name="Long")
    assert created_ok["id"] == "r" * 16


async def test_default_room_id_limit_is_128(serve, probe):
    _, p = await open_pair(serve, probe)
    with pytest.raises(ProbeError) as info:
        await p.request("join", room="x" * 129)
    assert info.value.code == "BAD_REQUEST"
    await still_alive(p)


@pytest.mark.parametrize("room", ["", "has space", "slash/room", "ünïcode", "semi;colon"])
async def test_invalid_room_id_characters_are_bad_request(serve, probe, room):
    _, p = await open_pair(serve, probe)
    with pytest.raises(ProbeError) as info:
        await p.request("join", room=room)
    assert info.value.code == "BAD_REQUEST"


# --- size and depth ----------------------------------------------------------------

async def test_oversized_frame_gets_payload_too_large_and_connection_survives(serve, probe):
    _, p = await open_pair(serve, probe, max_message_size=LIMIT)
    await p.send_raw(dumps({"op": "ping", "pad": "x" * (LIMIT + 10)}))
    error = await error_frame(p)
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert str(LIMIT) in error["message"]
    await still_alive(p)
    # just under the limit is accepted
    ok = await p.reply("ping", pad="y" * (LIMIT - 60))
    assert ok["ok"] is True


async def test_oversized_command_with_id_gets_a_reply_with_that_id(serve, probe):
    _, p = await open_pair(serve, probe, max_message_size=LIMIT)
    await p.request("join", room="chat")
    reply = await p.reply("publish", timeout=1, room="chat", event="message",
                          data={"text": "x" * (LIMIT + 10)})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_frame_above_four_times_the_limit_closes_1009(serve, probe):
    _, p = await open_pair(serve, probe, max_message_size=LIMIT)
    await p.send_raw(dumps({"op": "ping", "pad": "x" * (4 * LIMIT + 10)}))
    code, reason = await p.closed(timeout=2)
    assert code == 1009
    assert str(LIMIT) in reason
    disconnect = await p.next("disconnect", timeout=1)
    assert disconnect["code"] == 1009


async def test_frame_limit_counts_bytes_not_characters(serve, probe):
    _, p = await open_pair(serve, probe, max_message_size=LIMIT)
    pad = "\u20ac" * 500  # 500 characters, 1500 bytes in UTF-8
    assert len(dumps({"op": "ping", "pad": pad}).encode()) > LIMIT
    reply = await p.reply("ping", timeout=2, pad=pad)
    assert reply["ok"] is False and reply["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_event_data_above_limit_is_payload_too_large(serve, probe):
    _, p = await open_pair(serve, probe, max_message_size=LIMIT)
    await p.request("join", room="chat")
    # the frame is under the limit, the data in bytes is over it
    with pytest.raises(ProbeError) as info:
        await p.request("publish", room="chat", event="message", data={"text": "\u20ac" * 400})
    assert info.value.code == "PAYLOAD_TOO_LARGE"
    await still_alive(p)


async def test_deep_nesting_is_bad_request(serve, probe):
    _, p = await open_pair(serve, probe, max_json_depth=8)
    reply = await p.reply("publish", room="chat", event="message", data=nested(10))
    assert reply["ok"] is False
    assert reply["error"]["code"] == "BAD_REQUEST"
    assert "8" in reply["error"]["message"] and "nest" in reply["error"]["message"]
    # nesting within the limit is fine (it then fails on the schema, not the depth)
    within = await p.reply("publish", room="chat", event="message", data=nested(3))
    assert within["error"]["code"] != "BAD_REQUEST"
    await still_alive(p)


async def test_default_depth_limit_refuses_33_levels(serve, probe):
    _, p = await open_pair(serve, probe)
    deep = await p.reply("ping", pad=nested(40))
    assert deep["ok"] is False and deep["error"]["code"] == "BAD_REQUEST"
    await still_alive(p)


async def test_nesting_beyond_the_json_parser_recursion_limit_is_bad_request(serve, probe):
    _, p = await open_pair(serve, probe)
    text = '{"op": "ping", "id": 1, "x": ' + "[" * 5000 + "]" * 5000 + "}"
    await p.send_raw(text)
    error = await error_frame(p)
    assert error["code"] == "BAD_REQUEST"
    await still_alive(p)


# --- binary frames and origins -----------------------------------------------------

async def test_binary_frame_closes_4400(serve, probe):
    _, p = await open_pair(serve, probe)
    await p.send_raw(dumps({"op": "ping", "id": 1}).encode())
    code, reason = await p.closed(timeout=2)
    assert code == 4400
    assert "binary" in reason
    disconnect = await p.next("disconnect", timeout=1)
    assert disconnect["code"] == 4400 and disconnect["reconnect"] is False


async def test_disallowed_origin_is_closed_1008_before_any_frame(serve, probe):
    srv = await serve(make_dialogue())
    p = await probe(srv.ws_url("/ws"), hello=False, origin="https://evil.example")
    code, reason = await p.closed(timeout=2)
    assert code == 1008
    assert "evil.example" in reason
    assert p.frames.empty()


async def test_same_host_other_port_origin_is_refused(serve, probe):
    srv = await serve(make_dialogue())
    other_port = srv.port + 1 if srv.port < 65535 else srv.port - 1
    p = await probe(srv.ws_url("/ws"), hello=False, origin=f"http://127.0.0.1:{other_port}")
    assert (await p.closed(timeout=2))[0] == 1008
    assert p.frames.empty()


async def test_same_origin_is_accepted(serve, probe):
    srv = await serve(make_dialogue())
    p = await probe(srv.ws_url("/ws"), origin=f"http://127.0.0.1:{srv.port}")
    assert p.hello["op"] == "hello"
    await still_alive(p)


async def test_no_origin_is_accepted(serve, probe):
    srv = await serve(make_dialogue())
    p = await probe(srv.ws_url("/ws"))
    assert "origin" not in {k.lower() for k in p.ws.request.headers}
    assert p.hello["op"] == "hello"
    await still_alive(p)


async def test_configured_allowed_origin_is_accepted_and_others_refused(serve, probe):
    srv = await serve(make_dialogue(allowed_origins=["https://app.example.com"]))
    ok = await probe(srv.ws_url("/ws"), origin="https://app.example.com")
    assert ok.hello["op"] == "hello"
    await still_alive(ok)
    refused = await probe(srv.ws_url("/ws"), hello=False, origin="https://other.example.com")
    assert (await refused.closed(timeout=2))[0] == 1008
    assert refused.frames.empty()


async def test_wildcard_allowed_origins_accepts_any_origin(serve, probe):
    srv = await serve(make_dialogue(allowed_origins=["*"]))
    p = await probe(srv.ws_url("/ws"), origin="https://anywhere.example")
    assert p.hello["op"] == "hello"


# --- isolation ---------------------------------------------------------------------

async def test_garbage_from_one_client_does_not_affect_others(serve, probe):
    dialogue = make_dialogue(max_message_size=LIMIT)
    srv = await serve(dialogue)
    bad = await probe(srv.ws_url("/ws"))
    good = await probe(srv.ws_url("/ws"))
    await bad.request("join", room="chat")
    await good.request("join", room="chat")
    for garbage in ["{oops", "[]", dumps({"op": "nope", "id": 901}), dumps({"id": "x"}),
                    dumps({"op": "ping", "x": nested(100)}), dumps({"op": "ping", "x": "z" * 2000}),
                    dumps({"op": "join", "room": 5, "id": 902})]:
        await bad.send_raw(garbage)
    ack = await bad.request("publish", room="chat", event="message", data={"text": "still here"})
    assert ack["seq"] == 1
    # now kill the bad client with a huge frame; the room goes on
    await bad.send_raw("x" * (5 * LIMIT))
    assert (await bad.closed(timeout=2))[0] == 1009
    await dialogue.trigger("chat", message, {"text": "after"})
    first, second = await good.events(2, timeout=2)
    assert (first["seq"], first["data"]) == (1, {"text": "still here"})
    assert (second["seq"], second["data"], second["from"]) == (2, {"text": "after"}, "server")
    # the good client saw no error frames caused by the other one
    assert [f for f in await drain_frames(good) if f.get("op") == "error"] == []
    await still_alive(good)
