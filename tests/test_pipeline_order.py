"""The publish pipeline's order, step by step, on a real server: size -> membership -> event
allowed -> schema validation -> rate limit -> global middleware -> room middleware ->
before_each -> publish -> after_each. Each publish below fails a step *and* every later one;
the answer must be the earliest step's code, and no later step may have run (or spent budget).
The same chain over WebSocket, REST and the server's ``trigger``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict
from starlette.requests import HTTPConnection

from dialogue_fastapi import (
    Dialogue,
    DialogueError,
    EventMessage,
    Hooks,
    Identity,
    RateLimit,
    Reject,
    RoomConfig,
    define_event,
)
from dialogue_fastapi.testing import WsProbe


class Text(BaseModel):
    model_config = ConfigDict(extra="allow")  # keeps "refuse" for the later steps to read
    text: str


message = define_event("message", Text)

#: data that fails every step from validation on: wrong schema, and every later step refuses it
EVERYTHING_WRONG: dict[str, Any] = {"text": 5, "refuse": ["global", "room", "before_each"]}


def refuses(where: str, data: Any) -> bool:
    return isinstance(data, dict) and where in data.get("refuse", [])


class Steps:
    """Records which steps ran, and refuses an event at the steps its data names."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.published: list[EventMessage] = []

    def dialogue(self, limit: str) -> Dialogue:
        async def global_mw(ctx, call_next):  # type: ignore[no-untyped-def]
            self.ran.append("global")
            if refuses("global", ctx.message.data):
                raise Reject("global middleware said no")
            return await call_next(ctx)

        async def room_mw(ctx, call_next):  # type: ignore[no-untyped-def]
            self.ran.append("room")
            if refuses("room", ctx.message.data):
                raise Reject("room middleware said no")
            return await call_next(ctx)

        def before_each(msg: EventMessage, identity: Identity | None) -> bool:
            self.ran.append("before_each")
            return not refuses("before_each", msg.data)

        def after_each(msg: EventMessage, recipients: int) -> None:
            self.published.append(msg)

        def authenticate(conn: HTTPConnection) -> Identity:
            return Identity(conn.query_params.get("token") or conn.headers["x-user"])

        return Dialogue(
            rooms={"chat": RoomConfig(name="Chat", events=[message], middleware=[room_mw]),
                   "other": RoomConfig(name="Other", events=[message])},
            middleware=[global_mw], rate_limit=RateLimit(default=limit), max_message_size=256,
            hooks=Hooks(before_each=before_each, after_each=after_each), authenticate=authenticate,
        )

    def take(self) -> list[str]:
        ran, self.ran = self.ran, []
        return ran


def valid(*refuse: str) -> dict[str, Any]:
    return {"text": "hi", "refuse": list(refuse)}


async def test_each_step_answers_before_the_later_ones_over_websocket(serve) -> None:
    steps = Steps()
    srv = await serve(steps.dialogue("4/minute"))
    alice = await WsProbe.open(srv.ws_url("/ws") + "?token=alice")
    await alice.request("join", room="chat")

    async def code(room: str, event: str, data: Any) -> str:
        return (await alice.reply("publish", room=room, event=event, data=data))["error"]["code"]

    try:
        big = {**EVERYTHING_WRONG, "pad": "x" * 300}
        assert await code("other", "nope", big) == "PAYLOAD_TOO_LARGE"  # before membership
        assert await code("other", "nope", EVERYTHING_WRONG) == "NOT_IN_ROOM"  # before the event
        assert await code("chat", "nope", EVERYTHING_WRONG) == "EVENT_NOT_ALLOWED"  # before schema
        assert await code("chat", "message", EVERYTHING_WRONG) == "VALIDATION_FAILED"  # before limit
        assert steps.take() == []  # no middleware or hook ran for any of them
        # the four refusals spent no budget: four publishes fit in 4/minute
        assert await code("chat", "message", valid("global", "room", "before_each")) == "BLOCKED"
        assert steps.take() == ["global"]
        assert await code("chat", "message", valid("room", "before_each")) == "BLOCKED"
        assert steps.take() == ["global", "room"]
        refused = await alice.reply("publish", room="chat", event="message", data=valid("before_each"))
        assert refused["error"]["code"] == "BLOCKED"
        assert refused["error"]["reason"] == "blocked by before_each"
        assert steps.take() == ["global", "room", "before_each"]
        ok = await alice.request("publish", room="chat", event="message", data=valid())
        assert steps.take() == ["global", "room", "before_each"] and ok["seq"] == 1
        assert [m.seq for m in steps.published] == [1]  # after_each: only the published one
        # the budget is spent: the limit answers before any middleware runs
        assert await code("chat", "message", valid("global")) == "RATE_LIMITED"
        assert steps.take() == []
    finally:
        await alice.close()


async def test_the_same_order_over_rest(serve) -> None:
    steps = Steps()
    srv = await serve(steps.dialogue("2/minute"))
    async with httpx.AsyncClient(base_url=srv.http_url, headers={"X-User": "bob"}) as bob:

        async def code(event: str, data: Any) -> tuple[int, str]:
            answer = await bob.post("/rooms/chat/events", json={"event": event, "data": data})
            return answer.status_code, answer.json()["error"]["code"]

        assert await code("nope", {**EVERYTHING_WRONG, "pad": "x" * 300}) == (413, "PAYLOAD_TOO_LARGE")
        assert await code("nope", EVERYTHING_WRONG) == (403, "EVENT_NOT_ALLOWED")
        assert await code("message", EVERYTHING_WRONG) == (422, "VALIDATION_FAILED")
        assert steps.take() == []
        assert await code("message", valid("room")) == (403, "BLOCKED")
        assert steps.take() == ["global", "room"]
        accepted = await bob.post("/rooms/chat/events", json={"event": "message", "data": valid()})
        assert accepted.status_code == 202 and accepted.json()["seq"] == 1
        assert steps.take() == ["global", "room", "before_each"]
        assert await code("message", valid()) == (429, "RATE_LIMITED")
        assert steps.take() == []


async def test_the_same_order_for_trigger_without_a_rate_limit(serve) -> None:
    steps = Steps()
    dialogue = steps.dialogue("1/minute")
    await serve(dialogue)
    for data, expected in (({**EVERYTHING_WRONG, "pad": "x" * 300}, "PAYLOAD_TOO_LARGE"),
                           (EVERYTHING_WRONG, "VALIDATION_FAILED")):
        with pytest.raises(DialogueError) as info:
            await dialogue.trigger("chat", "message", data)
        assert info.value.code == expected
    with pytest.raises(DialogueError) as info:
        await dialogue.trigger("chat", "nope", {"text": "x"})
    assert info.value.code == "EVENT_NOT_ALLOWED"
    assert steps.take() == []
    with pytest.raises(DialogueError) as info:
        await dialogue.trigger("chat", "message", valid("room"))
    assert info.value.code == "BLOCKED" and steps.take() == ["global", "room"]
    for n in range(3):  # 1/minute does not apply to the server
        sent = await dialogue.trigger("chat", "message", valid())
        assert sent.seq == n + 1
        assert steps.take() == ["global", "room", "before_each"]
    assert [m.seq for m in steps.published] == [1, 2, 3]
