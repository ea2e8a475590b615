"""The built-in middleware on a real server: content filter (reject and replace), require_role,
transform (change and drop) and the structured log line with its correlation id."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, EventMessage, Identity, RoomConfig
from dialogue_fastapi.middleware import content_filter, log_events, require_role, transform
from dialogue_fastapi.publish.pipeline import PublishContext
from dialogue_fastapi.testing import ProbeError, WsProbe


def authenticate(conn: HTTPConnection) -> Identity:
    """``?token=name`` or ``?token=name:role1,role2``."""
    name, _, roles = conn.query_params["token"].partition(":")
    return Identity(name, meta={"roles": [r for r in roles.split(",") if r]})


async def joined(srv: Any, token: str, room: str = "chat") -> WsProbe:
    probe = await WsProbe.open(srv.ws_url("/ws") + f"?token={token}")
    await probe.request("join", room=room)
    return probe


async def test_content_filter_rejects_whole_words_case_insensitively(serve) -> None:
    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=authenticate,
                        middleware=[content_filter(["darn", "heck"])])
    srv = await serve(dialogue)
    alice = await joined(srv, "alice")
    try:
        with pytest.raises(ProbeError) as refused:
            await alice.request("publish", room="chat", event="m", data={"text": "well DARN it"})
        assert refused.value.code == "BLOCKED"
        assert refused.value.error["reason"] == "the message contains a blocked word"
        with pytest.raises(ProbeError):  # nested strings are checked too
            await alice.request("publish", room="chat", event="m", data={"a": [{"b": "heck"}]})
        ok = await alice.request("publish", room="chat", event="m", data={"text": "darning socks"})
        assert ok["seq"] == 1  # not a whole word: published
    finally:
        await alice.close()


async def test_content_filter_can_mask_instead_and_only_some_fields(serve) -> None:
    masking = content_filter(["darn"], mode="replace", replacement="#", fields=["text"])
    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat", middleware=[masking])},
                        authenticate=authenticate)
    srv = await serve(dialogue)
    alice, bob = await joined(srv, "alice"), await joined(srv, "bob")
    try:
        await alice.request("publish", room="chat", event="m",
                            data={"text": "Darn, darn!", "title": "darn"})
        got = (await bob.events(1))[0]
        assert got["data"] == {"text": "#, #!", "title": "darn"}
    finally:
        await alice.close()
        await bob.close()
    with pytest.raises(ValueError):
        content_filter([])
    with pytest.raises(ValueError):
        content_filter(["x"], mode="shout")  # type: ignore[arg-type]


async def test_require_role_reads_the_identitys_meta(serve) -> None:
    dialogue = Dialogue(rooms={"news": RoomConfig(name="News",
                                                  middleware=[require_role("editor", "admin")])},
                        authenticate=authenticate)
    srv = await serve(dialogue)
    reader, editor = await joined(srv, "reader", "news"), await joined(srv, "eve:editor", "news")
    try:
        with pytest.raises(ProbeError) as refused:
            await reader.request("publish", room="news", event="post", data=1)
        assert refused.value.code == "FORBIDDEN"
        assert "editor" in refused.value.message
        assert (await editor.request("publish", room="news", event="post", data=2))["seq"] == 1
        assert (await dialogue.trigger("news", "post", 3)).seq == 2  # the server always may
    finally:
        await reader.close()
        await editor.close()


async def test_transform_changes_or_drops_events(serve) -> None:
    def shout(message: EventMessage) -> EventMessage | None:
        if message.event == "noise":
            return None
        message.data = {"text": str(message.data["text"]).upper()}
        return message

    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=authenticate,
                        middleware=[transform(shout)])
    srv = await serve(dialogue)
    alice, bob = await joined(srv, "alice"), await joined(srv, "bob")
    try:
        await alice.request("publish", room="chat", event="m", data={"text": "hi"})
        assert (await bob.events(1))[0]["data"] == {"text": "HI"}
        dropped = await alice.request("publish", room="chat", event="noise", data={"text": "x"})
        assert dropped == {"seq": None, "ts": None, "dropped": True}
        assert await bob.nothing()
    finally:
        await alice.close()
        await bob.close()


async def test_log_events_writes_one_line_per_publish_with_a_correlation_id(serve, caplog) -> None:
    seen: list[str] = []

    async def after_log(ctx: PublishContext, call_next: Any) -> Any:
        seen.append(ctx.state["correlation_id"])
        return await call_next(ctx)

    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=authenticate,
                        middleware=[log_events(), after_log, content_filter(["darn"])])
    srv = await serve(dialogue)
    alice = await joined(srv, "alice")
    caplog.set_level(logging.INFO, logger="dialogue_fastapi.events")
    try:
        await alice.request("publish", room="chat", event="m", data={"text": "fine"})
        with pytest.raises(ProbeError):
            await alice.request("publish", room="chat", event="m", data={"text": "darn"})
    finally:
        await alice.close()
    lines = [r for r in caplog.records if r.name == "dialogue_fastapi.events"]
    assert len(lines) == 2
    first, second = (r.dialogue for r in lines)  # type: ignore[attr-defined]
    assert (first["outcome"], first["seq"], first["room"], first["sender"]) == (
        "published", 1, "chat", "alice")
    assert (second["outcome"], second["reason"]) == ("BLOCKED", "the message contains a blocked word")
    assert [first["correlation_id"], second["correlation_id"]] == seen
    assert f"correlation_id={seen[0]}" in lines[0].getMessage()
