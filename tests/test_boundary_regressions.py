"""Regressions of the input-boundary findings, each through a real server.

Every test here failed on 763b7de (before the use-case layer and ``rules.py``). The module
uses only what both versions have, so it can run against that commit too; settings the old
version does not know are passed only when ``DialogueConfig`` has them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import HTTPConnection

from dialogue_fastapi import (
    Dialogue,
    DialogueConfig,
    DialogueError,
    EventMessage,
    Identity,
    RateLimit,
    RoomConfig,
    define_event,
)
from dialogue_fastapi.testing import LiveServer, SseProbe, WsProbe

message = define_event("message", history=50)
ROOM_NUMBERS = itertools.count(1)
FORGED = "x\nevent: forged\nid: junk\nretry: 86400000"


def authenticate(conn: HTTPConnection) -> Identity | None:
    header = conn.headers.get("authorization", "")
    user = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
    user = user or conn.query_params.get("token")
    return Identity(user) if user else None


def known(**settings: Any) -> dict[str, Any]:
    """The settings this version of ``DialogueConfig`` has (763b7de lacks some)."""
    return {k: v for k, v in settings.items() if k in DialogueConfig.model_fields}


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"k": value}
    return value


def make_dialogue(**settings: Any) -> Dialogue:
    rooms = {
        "open": RoomConfig(name="Open", events=[]),
        "chat": RoomConfig(name="Chat", events=[message]),
        "synced": RoomConfig(name="Synced", events=[], sync_history_on_join=10),
    }
    return Dialogue(rooms=rooms, events=[message], authenticate=authenticate, **settings)


@contextlib.asynccontextmanager
async def serving(dialogue: Dialogue) -> AsyncIterator[LiveServer]:
    app = FastAPI()
    app.include_router(dialogue.router)
    srv = LiveServer(app, "127.0.0.1", 0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


class Env:
    def __init__(self, dialogue: Dialogue, srv: LiveServer) -> None:
        self.dialogue, self.srv = dialogue, srv
        self.probes: list[WsProbe] = []

    async def ws(self, user: str) -> WsProbe:
        probe = await WsProbe.open(self.srv.ws_url("/ws") + "?token=" + user)
        self.probes.append(probe)
        return probe

    def http(self, user: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.srv.http_url, timeout=5.0,
                                 headers={"Authorization": f"Bearer {user}"})


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    dialogue = make_dialogue(
        rate_limit=RateLimit(http={"create_room": "2/minute"}),
        **known(max_rooms_per_user=1, allow_client_rooms=True),
    )
    async with serving(dialogue) as srv:
        environment = Env(dialogue, srv)
        yield environment
        for probe in environment.probes:
            with contextlib.suppress(Exception):
                await probe.close()


async def fresh_room(env: Env, room: str, events: list[Any] | None = None, **config: Any) -> str:
    """A room of its own for one test (created by the application)."""
    await env.dialogue.create_room(room, RoomConfig(name=room, events=events or [], **config))
    return room


# --- a refused publish takes no seq -----------------------------------------------------------

@pytest.mark.parametrize("meta", [{"m": nested(40)}, {"m": "a\x00b"}, {"a\x00": 1}],
                         ids=["meta-too-deep", "nul-in-meta-value", "nul-in-meta-key"])
@pytest.mark.parametrize("via", ["ws", "rest"])
async def test_a_refused_publish_takes_no_seq(env: Env, meta: dict[str, Any], via: str) -> None:
    room = await fresh_room(env, f"noseq-{next(ROOM_NUMBERS)}")
    member = await env.ws("member")
    await member.request("join", room=room)
    sender = await env.ws("sender")
    await sender.request("join", room=room)
    if via == "ws":
        reply = await sender.reply("publish", room=room, event="note", data=1, meta=meta)
        assert not reply["ok"] and reply["error"]["code"] == "BAD_REQUEST", reply
    else:
        async with env.http("sender") as client:
            response = await client.post(f"/rooms/{room}/events",
                                         json={"event": "note", "data": 1, "meta": meta})
        assert response.status_code == 400 and response.json()["error"]["code"] == "BAD_REQUEST"
    assert (await sender.request("publish", room=room, event="note", data=2))["seq"] == 1
    got = await member.next("event")
    assert (got["seq"], got["data"]) == (1, 2)
    history = await member.request("history", room=room)
    assert [e["seq"] for e in history["events"]] == [1]
    assert history["position"]["seq"] == 1


# --- meta nested 300 deep ----------------------------------------------------------------------

async def test_rest_publish_with_meta_300_deep_is_refused_and_the_room_still_works(env: Env) -> None:
    room = await fresh_room(env, "deep-meta")
    async with env.http("alice") as client:
        response = await client.post(f"/rooms/{room}/events",
                                     json={"event": "note", "data": 1, "meta": nested(300)})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "BAD_REQUEST"
        history = await client.get(f"/rooms/{room}/history")
        assert history.status_code == 200, history.text
        assert history.json()["events"] == []
    probe = await env.ws("deep-reader")
    joined = await probe.request("join", room=room, history=10)
    assert joined["events"] == []
    assert (await probe.request("history", room=room))["events"] == []
    sse = await SseProbe.open(env.srv.http_url + f"/sse?room={room}&token=deep-sse")
    try:
        assert sse.status == 200
        await env.dialogue.trigger(room, "note", {"after": True})
        (event,) = await sse.events(1)
        assert (event["seq"], event["data"]) == (1, {"after": True})
    finally:
        await sse.close()


# --- SSE frame injection -----------------------------------------------------------------------

class RawStream:
    """The raw bytes of a streaming response, read on demand."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.aiter_raw()
        self.seen = b""

    async def until(self, marker: bytes, timeout: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout):
            while marker not in self.seen:
                try:
                    self.seen += await anext(self._chunks)
                except StopAsyncIteration:
                    raise AssertionError(f"the stream ended before {marker!r}: {self.seen!r}") from None
        return self.seen


async def test_an_event_name_cannot_inject_sse_fields(env: Env) -> None:
    room = await fresh_room(env, "inject")
    timeout = httpx.Timeout(5.0, read=None)
    async with (
        httpx.AsyncClient(base_url=env.srv.http_url, timeout=timeout) as raw,
        raw.stream("GET", f"/sse?room={room}&token=reader") as stream,
    ):
        assert stream.status_code == 200
        raw_stream = RawStream(stream)
        await raw_stream.until(b"event: dialogue")  # the hello
        async with env.http("injector") as client:
            response = await client.post(f"/rooms/{room}/events", json={"event": FORGED, "data": 1})
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "EVENT_NOT_ALLOWED"
        probe = await env.ws("injector")
        await probe.request("join", room=room)
        reply = await probe.reply("publish", room=room, event=FORGED, data=2)
        assert not reply["ok"] and reply["error"]["code"] == "EVENT_NOT_ALLOWED", reply
        with pytest.raises(DialogueError) as info:
            await env.dialogue.trigger(room, FORGED, 3)
        assert info.value.code == "EVENT_NOT_ALLOWED"
        await env.dialogue.trigger(room, "marker", {"end": True})
        seen = await raw_stream.until(b'"end":true')
    lines = seen.decode().splitlines()
    assert "event: forged" not in lines and "id: junk" not in lines, seen
    assert not any(line.startswith("retry: 86400000") for line in lines), seen
    assert [line for line in lines if line.startswith("event: ")] == ["event: dialogue", "event: marker"]


# --- history after + before --------------------------------------------------------------------

async def check_after_before(dialogue: Dialogue, srv: LiveServer, room: str) -> None:
    for n in range(1, 7):
        await dialogue.trigger(room, "note", n)
    await dialogue.flush()
    async with httpx.AsyncClient(base_url=srv.http_url, timeout=5.0,
                                 headers={"Authorization": "Bearer pager"}) as client:
        response = await client.get(f"/rooms/{room}/history", params={"after": 1, "before": 5})
    assert response.status_code == 200, response.text
    assert [e["seq"] for e in response.json()["events"]] == [2, 3, 4]
    probe = await WsProbe.open(srv.ws_url("/ws") + "?token=pager")
    try:
        await probe.request("join", room=room)
        page = await probe.request("history", room=room, after=1, before=5)
        assert [e["seq"] for e in page["events"]] == [2, 3, 4]
    finally:
        await probe.close()
    assert [m.seq for m in await dialogue.history(room, after=1, before=5)] == [2, 3, 4]


async def test_history_after_and_before_without_persistence(env: Env) -> None:
    await check_after_before(env.dialogue, env.srv, await fresh_room(env, "paged"))


@pytest.mark.parametrize("window", [1000, 2], ids=["hot-window-holds-all", "older-from-store"])
async def test_history_after_and_before_with_persistence(tmp_path: Path, window: int) -> None:
    dialogue = make_dialogue(persistence=f"sqlite+aiosqlite:///{tmp_path / 'history.db'}",
                             recovery_window=window)
    async with serving(dialogue) as srv:
        await check_after_before(dialogue, srv, "open")


# --- unsubscribe with many unknown names -------------------------------------------------------

async def test_unsubscribe_with_5000_unknown_names(env: Env) -> None:
    probe = await env.ws("unsubscriber")
    await probe.request("join", room="open", subscriptions="*")
    names = [f"u{i}" for i in range(5000)]
    reply = await probe.reply("unsubscribe", room="open", events=names)
    assert not reply["ok"] and reply["error"]["code"] == "BAD_REQUEST", str(reply)[:300]
    conn = env.dialogue.runtime.hub.connections[probe.hello["client_id"]]
    assert len(conn.rooms["open"].excluded) == 0
    assert (await probe.request("subscribe", room="open", events=["u1"]))["subscriptions"] == "*"
    # a room with declared events refuses names it does not have
    await probe.request("join", room="chat", subscriptions="*")
    reply = await probe.reply("unsubscribe", room="chat", events=["nope", "nada"])
    assert not reply["ok"] and reply["error"]["code"] == "EVENT_NOT_ALLOWED", reply
    assert len(conn.rooms["chat"].excluded) == 0


# --- create_room limits across transports ------------------------------------------------------

async def test_create_room_over_websocket_counts_in_the_rest_limit(env: Env) -> None:
    async with env.http("builder") as client:
        for n in (1, 2):  # two refusals (the room exists) spend the 2/minute budget
            response = await client.post("/rooms", json={"room": "chat", "name": f"n{n}"})
            assert response.status_code == 409, response.text
    probe = await env.ws("builder")
    reply = await probe.reply("create_room", room="builder-room", name="B")
    assert not reply["ok"] and reply["error"]["code"] == "RATE_LIMITED", reply
    assert env.dialogue.runtime.registry.find("builder-room") is None


async def test_create_room_over_websocket_counts_in_max_rooms_per_user(env: Env) -> None:
    probe = await env.ws("owner")
    await probe.request("create_room", room="owner-1", name="O")
    reply = await probe.reply("create_room", room="owner-2", name="O")  # the limit is 1 room
    assert not reply["ok"] and reply["error"]["code"] == "FORBIDDEN", reply
    async with env.http("owner2") as client:
        assert (await client.post("/rooms", json={"room": "owner2-1", "name": "O"})).status_code == 201
        response = await client.post("/rooms", json={"room": "owner2-2", "name": "O"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "FORBIDDEN"


async def test_create_room_refuses_a_room_id_with_a_trailing_newline(env: Env) -> None:
    probe = await env.ws("newline-ws")
    reply = await probe.reply("create_room", room="lobby\n", name="L")
    assert not reply["ok"] and reply["error"]["code"] == "BAD_REQUEST", reply
    async with env.http("newline-rest") as client:
        response = await client.post("/rooms", json={"room": "lobby\n", "name": "L"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "BAD_REQUEST"
    assert env.dialogue.runtime.registry.find("lobby\n") is None


# --- a join that fails after it began ----------------------------------------------------------

async def test_a_join_that_fails_after_the_presence_reservation_leaves_no_presence(
    env: Env, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The join reply cannot be built: reading the room's history fails after the presence
    reservation (hot events are encoded when published, so a value no client could send
    cannot break them any more; a history reader that raises stands for a store read that
    fails). The join fails after the reservation, and must undo it."""
    room = await fresh_room(env, "broken-sync", sync_history_on_join=10)
    await env.dialogue.trigger(room, "note", 1)

    async def unreadable(*args: Any, **kwargs: Any) -> list[EventMessage]:
        raise RuntimeError("the history cannot be read")

    monkeypatch.setattr(env.dialogue.runtime.history, "page", unreadable)
    probe = await env.ws("joiner")
    reply = await probe.reply("join", room=room)
    assert not reply["ok"], reply
    assert await env.dialogue.presence(room) == []
    async with env.http("looker") as client:
        response = await client.get(f"/rooms/{room}")
    assert response.status_code == 200 and response.json()["size"] == 0, response.text
    conn = env.dialogue.runtime.hub.connections[probe.hello["client_id"]]
    assert room not in conn.rooms
    # the connection still works, and is not a member
    reply = await probe.reply("publish", room=room, event="note", data=2)
    assert not reply["ok"] and reply["error"]["code"] == "NOT_IN_ROOM", reply
