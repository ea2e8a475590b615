"""``GET /sse`` with a real HTTP client streaming from a real server: framing, the cursor,
the event filter, authentication, channels, presence and size, cleanup, recovery with
``Last-Event-ID`` and the slow-consumer policy."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Hooks, Identity, RoomConfig, define_event
from dialogue_fastapi.core.types import Position
from dialogue_fastapi.sse.cursor import decode_cursor, encode_cursor
from dialogue_fastapi.testing import SseProbe, WsProbe

message = define_event("message", history=50)
typing = define_event("typing")


def authenticate(conn: HTTPConnection) -> Identity | None:
    token = (conn.query_params.get("token") or conn.cookies.get("session")
             or conn.headers.get("authorization", "").removeprefix("Bearer ").strip())
    return Identity(token) if token else None


def app(**settings: Any) -> Dialogue:
    settings.setdefault("rooms", {
        "news": RoomConfig(name="News", events=[message, typing]),
        "sports": RoomConfig(name="Sports"),
        "ws-only": RoomConfig(name="WS only", channels=["websocket"]),
        "tiny": RoomConfig(name="Tiny", max_size=1),
    })
    settings.setdefault("authenticate", authenticate)
    return Dialogue(**settings)


async def until(check: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def test_framing_headers_hello_and_events(serve) -> None:
    dialogue = app()
    srv = await serve(dialogue)
    probe = await SseProbe.open(srv.http_url + "/sse?room=news&token=alice")
    try:
        assert probe.status == 200
        assert probe.headers["content-type"].startswith("text/event-stream")
        assert probe.headers["cache-control"] == "no-store"
        assert probe.headers["x-accel-buffering"] == "no"
        hello = probe.hello
        assert (hello["op"], hello["user_id"], hello["protocol"]) == ("hello", "alice", 1)
        assert hello["positions"]["news"]["seq"] == 0
        await dialogue.trigger("news", "message", {"text": "first"})
        got = await probe.next("message")
        assert got["data"]["op"] == "event" and got["data"]["data"] == {"text": "first"}
        assert got["data"]["seq"] == 1 and got["data"]["room"] == "news"
        epoch = hello["positions"]["news"]["epoch"]
        assert decode_cursor(got["id"]) == {"news": Position(1, epoch)}
    finally:
        await probe.close()


async def test_retry_advice_comes_first_and_pings_are_comments(serve) -> None:
    srv = await serve(app(heartbeat=0.2))
    text = ""
    async with httpx.AsyncClient(timeout=5) as client, \
            client.stream("GET", srv.http_url + "/sse?room=news&token=a") as response, \
            asyncio.timeout(5):
        async for chunk in response.aiter_text():
            text += chunk
            if text.count("\n: ") >= 2:
                break
    assert text.startswith("retry: 2000\nid: c1.")
    assert text.count("\n: ") >= 2  # heartbeat comment lines


async def test_several_rooms_in_one_stream_with_one_cursor(serve) -> None:
    dialogue = app()
    srv = await serve(dialogue)
    probe = await SseProbe.open(srv.http_url + "/sse?room=news&room=sports&token=a")
    try:
        assert set(probe.hello["positions"]) == {"news", "sports"}
        await dialogue.trigger("news", "message", {"text": "n"})
        await dialogue.trigger("sports", "goal", {"team": "x"})
        await dialogue.trigger("sports", "goal", {"team": "y"})
        events = await probe.events(3)
        assert [(e["room"], e["seq"]) for e in events] == [("news", 1), ("sports", 1), ("sports", 2)]
        positions = decode_cursor(probe.last_id or "")
        assert {room: p.seq for room, p in positions.items()} == {"news": 1, "sports": 2}
    finally:
        await probe.close()


async def test_the_event_filter_narrows_the_stream(serve) -> None:
    dialogue = app()
    srv = await serve(dialogue)
    probe = await SseProbe.open(srv.http_url + "/sse?room=news&events=message&token=a")
    try:
        await dialogue.trigger("news", "typing", {"who": "x"})
        await dialogue.trigger("news", "message", {"text": "hi"})
        got = await probe.next()
        assert (got["event"], got["data"]["seq"]) == ("message", 2)
    finally:
        await probe.close()
    unknown = await SseProbe.open(srv.http_url + "/sse?room=news&events=nope&token=a")
    assert unknown.status == 403 and unknown.error()["code"] == "EVENT_NOT_ALLOWED"
    await unknown.close()


async def test_authentication_by_header_cookie_or_token_and_401_without(serve) -> None:
    srv = await serve(app())
    url = srv.http_url + "/sse?room=news"
    for kwargs in ({"headers": {"Authorization": "Bearer bob"}},
                   {"headers": {"Cookie": "session=bob"}}):
        probe = await SseProbe.open(url, **kwargs)
        assert probe.hello["user_id"] == "bob"
        await probe.close()
    refused = await SseProbe.open(url)
    assert refused.status == 401 and refused.error()["code"] == "UNAUTHORIZED"
    await refused.close()


async def test_refusals_before_the_stream_starts(serve) -> None:
    srv = await serve(app())
    cases = [("ws-only", 403, "FORBIDDEN"), ("nope", 404, "ROOM_NOT_FOUND")]
    for room, status, code in cases:
        probe = await SseProbe.open(f"{srv.http_url}/sse?room={room}&token=a")
        assert (probe.status, probe.error()["code"]) == (status, code)
        await probe.close()
    bad = await SseProbe.open(srv.http_url + "/sse?room=news&token=a",
                              headers={"Last-Event-ID": "not-a-cursor"})
    assert (bad.status, bad.error()["code"]) == (400, "BAD_REQUEST")
    await bad.close()


async def test_an_sse_stream_is_a_member_counted_in_presence_and_size(serve) -> None:
    joined: list[tuple[str, str]] = []
    left: list[tuple[str, str]] = []
    hooks = Hooks(on_joined=lambda who, room: joined.append((who.user_id, room)),
                  on_left=lambda who, room: left.append((who.user_id, room)))
    dialogue = app(hooks=hooks)
    srv = await serve(dialogue)
    probe = await SseProbe.open(srv.http_url + "/sse?room=tiny&token=carol")
    ws = await WsProbe.open(srv.ws_url("/ws") + "?token=dave")
    try:
        assert [m.user_id for m in await dialogue.presence("tiny")] == ["carol"]
        assert joined == [("carol", "tiny")]
        full = await ws.reply("join", room="tiny")
        assert full["error"]["code"] == "ROOM_FULL"
        second = await SseProbe.open(srv.http_url + "/sse?room=tiny&token=erin")
        assert (second.status, second.error()["code"]) == (409, "ROOM_FULL")
        await second.close()
        await probe.close()  # the client goes away: it leaves at once

        async def empty() -> bool:
            return not await dialogue.presence("tiny")

        await until(empty)
        assert left == [("carol", "tiny")]
        await ws.request("join", room="tiny")  # there is room again
    finally:
        await probe.close()
        await ws.close()


async def test_last_event_id_replays_exactly_what_was_missed(serve) -> None:
    dialogue = app()
    srv = await serve(dialogue)
    probe = await SseProbe.open(srv.http_url + "/sse?room=news&room=sports&token=a")
    for n in range(3):
        await dialogue.trigger("news", "message", {"n": n})
    await dialogue.trigger("sports", "goal", {"n": 0})
    await probe.events(4)
    cursor = probe.last_id
    await probe.close()
    for n in range(3, 6):  # missed while away
        await dialogue.trigger("news", "message", {"n": n})
    await dialogue.trigger("sports", "goal", {"n": 1})
    again = await SseProbe.open(srv.http_url + "/sse?room=news&room=sports&token=a",
                                headers={"Last-Event-ID": cursor or ""})
    try:
        replayed = await again.events(4)
        assert sorted((e["room"], e["seq"]) for e in replayed) == [
            ("news", 4), ("news", 5), ("news", 6), ("sports", 2)]
        await dialogue.trigger("news", "message", {"n": 6})
        assert (await again.events(1))[0]["seq"] == 7  # then live: no gap, no duplicate
        assert again.messages.empty()
    finally:
        await again.close()
    by_query = await SseProbe.open(
        f"{srv.http_url}/sse?room=news&token=a&last_event_id={cursor}")
    try:
        assert [e["seq"] for e in await by_query.events(4)] == [4, 5, 6, 7]
    finally:
        await by_query.close()


async def test_a_room_that_cannot_be_recovered_says_so(serve) -> None:
    dialogue = app()
    srv = await serve(dialogue)
    stale = encode_cursor({"news": Position(3, "another-epoch")})
    probe = await SseProbe.open(srv.http_url + "/sse?room=news&token=a",
                                headers={"Last-Event-ID": stale})
    try:
        failed = await probe.next("dialogue")
        assert failed["data"]["op"] == "recover_failed" and failed["data"]["room"] == "news"
        assert failed["data"]["position"]["seq"] == 0
    finally:
        await probe.close()


def _stalled_stream(port: int, path: str) -> socket.socket:
    """An SSE request whose response is never read (the client stopped reading)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


async def test_a_reader_that_stops_reading_is_cut_and_the_room_keeps_its_rate(
    serve, caplog, monkeypatch
) -> None:
    import dialogue_fastapi.sse.routes

    monkeypatch.setattr(dialogue_fastapi.sse.routes, "SEND_TIMEOUT", 0.5)
    dialogue = app(send_queue_max_messages=20)
    srv = await serve(dialogue)
    stalled = _stalled_stream(srv.port, "/sse?room=sports&token=slow")
    fast = await SseProbe.open(srv.http_url + "/sse?room=sports&token=fast")
    try:
        async def two_members() -> bool:
            return len(await dialogue.presence("sports")) == 2

        await until(two_members)
        pad = "x" * 8000
        for n in range(1500):  # 12 MB: more than the socket buffers hold
            await dialogue.trigger("sports", "tick", {"n": n, "pad": pad})
            await asyncio.sleep(0)
        got = await fast.events(1500, timeout=20)
        assert [e["data"]["n"] for e in got] == list(range(1500))

        async def only_fast() -> bool:
            return [m.user_id for m in await dialogue.presence("sports")] == ["fast"]

        await until(only_fast, timeout=5)  # cut (4009) and its rooms left at once
        assert any("(user slow): send queue overflow" in r.getMessage() for r in caplog.records)

        async def cut() -> bool:  # the response still stuck on the full socket is ended
            return any("stopped reading" in r.getMessage() for r in caplog.records)

        await until(cut, timeout=3)
    finally:
        stalled.close()
        await fast.close()


async def test_publishing_from_an_sse_client_goes_through_rest(serve) -> None:
    dialogue = app()
    srv = await serve(dialogue)
    probe = await SseProbe.open(srv.http_url + "/sse?room=news&token=a")
    try:
        async with httpx.AsyncClient(base_url=srv.http_url) as client:
            ok = await client.post("/rooms/news/events", headers={"Authorization": "Bearer a"},
                                   json={"event": "message", "data": {"text": "via rest"}})
            assert ok.status_code == 202
            refused = await client.post("/rooms/news/events", headers={"Authorization": "Bearer a"},
                                        json={"event": "nope", "data": 1})
            assert refused.json()["error"]["code"] == "EVENT_NOT_ALLOWED"
        got = await probe.next("message")
        assert got["data"]["data"] == {"text": "via rest"} and got["data"]["from"] == "a"
    finally:
        await probe.close()


async def test_a_server_shutdown_ends_streams_with_disconnect(caplog) -> None:
    from fastapi import FastAPI

    from dialogue_fastapi.testing import LiveServer

    dialogue = app()
    application = FastAPI()
    application.include_router(dialogue.router)
    server = LiveServer(application, "127.0.0.1", 0)
    await server.start()
    probe = await SseProbe.open(server.http_url + "/sse?room=news&token=a")
    try:
        await server.stop()
        rest = await probe.ended(timeout=5)
        assert [m["data"] for m in rest] == [
            {"op": "disconnect", "code": 1001, "reason": "server shutting down", "reconnect": True}]
        assert not [r for r in caplog.records if "without completing response" in r.getMessage()]
    finally:
        await probe.close()


async def test_a_websocket_join_to_an_sse_only_room_is_forbidden(serve) -> None:
    dialogue = app(rooms={"feed": RoomConfig(name="Feed", channels=["sse"])})
    srv = await serve(dialogue)
    ws = await WsProbe.open(srv.ws_url("/ws") + "?token=a")
    try:
        refused = await ws.reply("join", room="feed")
        assert refused["error"]["code"] == "FORBIDDEN"
        assert "websocket" in refused["error"]["message"]
    finally:
        await ws.close()
    probe = await SseProbe.open(srv.http_url + "/sse?room=feed&token=a")
    assert probe.status == 200
    await probe.close()


async def test_a_client_gone_before_its_stream_started_still_leaves(serve) -> None:
    joined: list[str] = []
    left: list[str] = []

    async def slow_before_join(who: Identity, room: str) -> bool:
        await asyncio.sleep(0.3)  # the client hangs up meanwhile
        return True

    hooks = Hooks(before_join=slow_before_join, on_joined=lambda who, room: joined.append(room),
                  on_left=lambda who, room: left.append(room))
    dialogue = app(hooks=hooks)
    srv = await serve(dialogue)
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall(b"GET /sse?room=news&token=gone HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.05)
    sock.close()

    async def left_again() -> bool:
        return joined == ["news"] and left == ["news"] and not await dialogue.presence("news")

    await until(left_again, timeout=5)


async def test_a_cursor_at_seq_zero_recovers_whatever_the_epoch(serve) -> None:
    # a room with no event yet may get another epoch at each restart: seq 0 is "nothing seen"
    dialogue = app()
    srv = await serve(dialogue)
    await dialogue.trigger("news", "message", {"text": "published meanwhile"})
    cursor = encode_cursor({"news": Position(0, "epoch-of-an-earlier-run")})
    probe = await SseProbe.open(srv.http_url + "/sse?room=news&token=a",
                                headers={"Last-Event-ID": cursor})
    try:
        got = await probe.next()
        assert (got["event"], got["data"]["seq"]) == ("message", 1)  # not recover_failed
        ws = await WsProbe.open(srv.ws_url("/ws") + "?token=b")
        try:
            joined = await ws.request("join", room="news",
                                      since={"seq": 0, "epoch": "epoch-of-an-earlier-run"})
            assert joined["recovered"] is True and [e["seq"] for e in joined["events"]] == [1]
        finally:
            await ws.close()
    finally:
        await probe.close()
