"""The event middleware chain: order, transform, block, drop, failures."""

import logging

import pytest

from dialogue_fastapi import Dialogue, Reject, RoomConfig


def make(global_mw=(), room_mw=()):
    return Dialogue(
        rooms={"chat": RoomConfig(name="Chat", middleware=list(room_mw))},
        middleware=list(global_mw), allow_anonymous=True,
    )


async def member(probe, srv):
    p = await probe(srv.ws_url("/ws"))
    await p.request("join", room="chat")
    return p


async def test_global_then_room_middleware_in_order_and_transforming(serve, probe):
    seen: list[str] = []

    async def first(ctx, call_next):
        seen.append("global")
        ctx.message.data = {**ctx.message.data, "path": ["global"]}
        return await call_next(ctx)

    async def second(ctx, call_next):
        seen.append("room")
        ctx.message.data = {**ctx.message.data, "path": [*ctx.message.data["path"], "room"]}
        return await call_next(ctx)

    srv = await serve(make([first], [second]))
    a, b = await member(probe, srv), await member(probe, srv)
    await a.request("publish", room="chat", event="x", data={"n": 1})
    event = await b.next("event")
    assert seen == ["global", "room"]
    assert event["data"] == {"n": 1, "path": ["global", "room"]}


async def test_reject_blocks_with_reason_and_nothing_is_delivered(serve, probe):
    async def no_links(ctx, call_next):
        if "http" in str(ctx.message.data):
            raise Reject("links are not allowed")
        return await call_next(ctx)

    srv = await serve(make([no_links]))
    a, b = await member(probe, srv), await member(probe, srv)
    reply = await a.reply("publish", room="chat", event="x", data={"t": "http://x"})
    assert reply["error"]["code"] == "BLOCKED"
    assert reply["error"]["reason"] == "links are not allowed"
    assert await b.nothing("event", 0.2)
    ok = await a.request("publish", room="chat", event="x", data={"t": "fine"})
    assert ok["seq"] == 1  # the refused event took no seq


async def test_crashing_middleware_gives_internal_with_a_logged_correlation_id(serve, probe, caplog):
    async def broken(ctx, call_next):
        raise RuntimeError("boom")

    srv = await serve(make(room_mw=[broken]))
    a = await member(probe, srv)
    with caplog.at_level(logging.ERROR, logger="dialogue_fastapi"):
        reply = await a.reply("publish", room="chat", event="x", data={})
    error = reply["error"]
    assert error["code"] == "INTERNAL" and error["correlation_id"].startswith("err_")
    assert any(error["correlation_id"] in r.getMessage() for r in caplog.records)
    assert (await a.request("ping")) == {}  # the connection carries on


async def test_explicit_drop_acks_without_seq(serve, probe):
    async def drop_noise(ctx, call_next):
        if ctx.message.event == "noise":
            ctx.drop()
            return None
        return await call_next(ctx)

    srv = await serve(make([drop_noise]))
    a, b = await member(probe, srv), await member(probe, srv)
    ack = await a.request("publish", room="chat", event="noise", data={})
    assert ack == {"seq": None, "ts": None, "dropped": True}
    assert await b.nothing("event", 0.2)


async def test_middleware_that_neither_passes_nor_drops_is_blocked(serve, probe):
    async def forgetful(ctx, call_next):
        return None

    srv = await serve(make([forgetful]))
    a = await member(probe, srv)
    reply = await a.reply("publish", room="chat", event="x", data={})
    assert reply["error"]["code"] == "BLOCKED"
    assert "forgetful" in reply["error"]["message"]


async def test_middleware_sees_the_sender_and_transport_for_trigger_too(serve, probe):
    contexts = []

    async def record(ctx, call_next):
        contexts.append((ctx.transport, ctx.identity.user_id if ctx.identity else None))
        return await call_next(ctx)

    dialogue = make([record])
    srv = await serve(dialogue)
    a = await member(probe, srv)
    await a.request("publish", room="chat", event="x", data={})
    await dialogue.trigger("chat", "x", {})
    assert contexts == [("websocket", a.hello["user_id"]), ("server", None)]


@pytest.mark.parametrize("code", ["FORBIDDEN", "RATE_LIMITED"])
async def test_reject_with_another_code(serve, probe, code):
    async def refuse(ctx, call_next):
        raise Reject("no", code=code)

    srv = await serve(make([refuse]))
    a = await member(probe, srv)
    assert (await a.reply("publish", room="chat", event="x", data={}))["error"]["code"] == code
