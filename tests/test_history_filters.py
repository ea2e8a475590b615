"""History filters by sender and time range, over WebSocket and REST."""

import httpx
from helpers import authenticate

from dialogue_fastapi import Dialogue, RoomConfig


async def test_history_filters_by_sender_and_time(serve, probe):
    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=authenticate)
    srv = await serve(dialogue)
    alice = await probe(srv.ws_url("/ws") + "?token=alice")
    await alice.request("join", room="chat")
    sent = [await alice.request("publish", room="chat", event="m", data={"i": i}) for i in range(3)]
    await dialogue.trigger("chat", "m", {"i": "server"})
    by_alice = await alice.request("history", room="chat", sender="alice")
    assert [e["seq"] for e in by_alice["events"]] == [s["seq"] for s in sent]
    by_server = await alice.request("history", room="chat", sender="server")
    assert [e["data"] for e in by_server["events"]] == [{"i": "server"}]
    middle = sent[1]["ts"]
    windowed = await alice.request("history", room="chat", since_ts=middle, until_ts=middle)
    assert all(e["ts"] == middle for e in windowed["events"]) and windowed["events"]
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        response = await http.get("/rooms/chat/history", params={"sender": "server", "token": "bob"})
    assert response.status_code == 200
    assert [e["from"] for e in response.json()["events"]] == ["server"]
