"""Connection tickets: ``POST /tickets`` through the app's ``authenticate``, then ``/ws?ticket=``
and ``/sse?ticket=`` once, within the ticket's lifetime, also on another node (Redis)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from helpers import serve_dialogue
from redis_helpers import REDIS_URL, delete_prefix, need_redis
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Identity, Reject, RoomConfig
from dialogue_fastapi.auth.tickets import MemoryTickets, tickets_for
from dialogue_fastapi.testing import LiveServer, SseProbe, WsProbe

ROOMS = {"chat": RoomConfig(name="Chat")}
USERS = {"t-alice": Identity("alice", {"role": "admin"})}


class HeaderAuth:
    """Users by ``Authorization: Bearer``; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, conn: HTTPConnection) -> Identity:
        self.calls += 1
        token = conn.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in USERS:
            raise Reject("bad token")
        return USERS[token]


def make(auth: HeaderAuth, **settings: Any) -> Dialogue:
    return Dialogue(rooms=ROOMS, authenticate=auth, **settings)


async def get_ticket(srv: LiveServer, token: str = "t-alice") -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(srv.http_url + "/tickets", headers={"Authorization": f"Bearer {token}"})


async def ticket_of(srv: LiveServer) -> str:
    response = await get_ticket(srv)
    assert response.status_code == 201, response.text
    return str(response.json()["ticket"])


async def test_a_ticket_opens_one_websocket_without_calling_authenticate(serve, probe):
    auth = HeaderAuth()
    srv = await serve(make(auth))
    response = await get_ticket(srv)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"ticket", "expires_in"} and body["expires_in"] == 30
    assert response.headers["cache-control"] == "no-store"
    assert auth.calls == 1
    p = await probe(srv.ws_url(f"/ws?ticket={body['ticket']}"))
    assert p.hello["user_id"] == "alice"
    await p.request("join", room="chat")
    assert auth.calls == 1  # the ticket stood in for authenticate
    again = await probe(srv.ws_url(f"/ws?ticket={body['ticket']}"), hello=False)
    assert await again.closed(timeout=2) == (4001, "invalid, used or expired ticket")


async def test_a_ticket_opens_one_sse_stream_and_keeps_the_identity(serve):
    dialogue = make(HeaderAuth())
    srv = await serve(dialogue)
    ticket = await ticket_of(srv)
    stream = await SseProbe.open(f"{srv.http_url}/sse?room=chat&ticket={ticket}")
    try:
        assert stream.status == 200 and stream.hello["user_id"] == "alice"
        entries = await dialogue.presence("chat")
        assert [e.user_id for e in entries] == ["alice"]
    finally:
        await stream.close()
    reused = await SseProbe.open(f"{srv.http_url}/sse?room=chat&ticket={ticket}")
    await reused.close()
    assert reused.status == 401
    assert reused.error() == {"code": "UNAUTHORIZED", "message": "invalid, used or expired ticket"}


async def test_unknown_and_expired_tickets_are_refused_like_bad_credentials(serve, probe):
    srv = await serve(make(HeaderAuth(), ticket_ttl=0.2))
    forged = await probe(srv.ws_url("/ws?ticket=forged"), hello=False)
    assert (await forged.closed(timeout=2))[0] == 4001
    ticket = await ticket_of(srv)
    await asyncio.sleep(0.3)
    late = await SseProbe.open(f"{srv.http_url}/sse?room=chat&ticket={ticket}")
    await late.close()
    assert late.status == 401 and late.error()["code"] == "UNAUTHORIZED"


async def test_tickets_need_the_normal_credentials(serve):
    auth = HeaderAuth()
    srv = await serve(make(auth))
    refused = await get_ticket(srv, token="t-mallory")
    assert refused.status_code == 401
    assert refused.json() == {"error": {"code": "UNAUTHORIZED", "message": "bad token"}}
    async with httpx.AsyncClient() as http:
        bare = await http.post(srv.http_url + "/tickets")
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "UNAUTHORIZED"


async def test_without_a_ticket_ws_and_sse_still_call_authenticate(serve, probe):
    auth = HeaderAuth()
    srv = await serve(make(auth))
    p = await probe(srv.ws_url("/ws"), additional_headers={"Authorization": "Bearer t-alice"})
    assert p.hello["user_id"] == "alice"
    stream = await SseProbe.open(f"{srv.http_url}/sse?room=chat",
                                 headers={"Authorization": "Bearer t-alice"})
    await stream.close()
    assert stream.status == 200 and auth.calls == 2


def test_openapi_documents_the_ticket_route_and_parameter() -> None:
    from fastapi import FastAPI

    app = FastAPI()
    app.include_router(make(HeaderAuth()).router, prefix="/d")
    schema = app.openapi()
    post = schema["paths"]["/d/tickets"]["post"]
    grant = post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    model = schema["components"]["schemas"][grant.rsplit("/", 1)[1]]
    assert model["required"] == ["ticket", "expires_in"]
    assert model["properties"]["expires_in"]["type"] == "integer"
    assert post["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
    sse_params = {p["name"] for p in schema["paths"]["/d/sse"]["get"]["parameters"]}
    assert "ticket" in sse_params


async def test_memory_tickets_expire_and_are_dropped() -> None:
    now = [100.0]
    store = MemoryTickets(30, clock=lambda: now[0])
    first = await store.issue(Identity("a"))
    now[0] += 31
    second = await store.issue(Identity("b"))  # drops the expired first one
    assert await store.redeem(first) is None
    assert await store.redeem(second) == Identity("b")
    assert await store.redeem(second) is None


async def test_a_ticket_from_one_redis_node_is_redeemed_once_on_another():
    await need_redis()
    from dialogue_fastapi.brokers.redis import RedisBroker

    prefix = f"dtest{secrets.token_hex(4)}:"
    dialogues = [make(HeaderAuth(), broker=RedisBroker(REDIS_URL, prefix=prefix)) for _ in range(2)]
    servers = [await serve_dialogue(d) for d in dialogues]
    a, b = servers
    try:
        ticket = await ticket_of(a)
        p = await WsProbe.open(b.ws_url(f"/ws?ticket={ticket}"))
        assert p.hello["user_id"] == "alice"
        await p.close()
        again = await WsProbe.open(a.ws_url(f"/ws?ticket={ticket}"), hello=False)
        assert (await again.closed(timeout=2))[0] == 4001
        other = await ticket_of(a)
        stream = await SseProbe.open(f"{b.http_url}/sse?room=chat&ticket={other}")
        await stream.close()
        assert stream.status == 200 and stream.hello["user_id"] == "alice"
        store = tickets_for(dialogues[1].runtime.broker, 5)  # the meta travels too
        assert await store.redeem(await store.issue(USERS["t-alice"])) == USERS["t-alice"]
    finally:
        for server in servers:
            await server.stop()
        await delete_prefix(prefix)


pytestmark = pytest.mark.timeout(20)
