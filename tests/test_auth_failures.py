"""Failed authentications per client IP (``RateLimit.auth_failures``) on a real server: counted on
every transport together, refused before ``authenticate`` runs (429 / close 4008), another IP
unaffected; connection attempts also refused before ``authenticate``; an unreachable storage
refuses (503 / close 1013) instead of waving clients through."""

from __future__ import annotations

import httpx
from redis_helpers import free_port
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Identity, RateLimit, RoomConfig
from dialogue_fastapi.testing import SseProbe, WsProbe

OTHER_IP = "127.0.0.2"  # loopback: a second client address on the same machine


class Authenticator:
    """``good-<user>`` tokens pass; counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, conn: HTTPConnection) -> Identity | None:
        self.calls += 1
        token = conn.query_params.get("token") or conn.headers.get("x-token", "")
        return Identity(token.removeprefix("good-")) if token.startswith("good-") else None


def make(limit: RateLimit) -> tuple[Dialogue, Authenticator]:
    auth = Authenticator()
    return Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=auth, rate_limit=limit), auth


async def ws_close(url: str, **kwargs: object) -> tuple[int, str]:
    probe = await WsProbe.open(url, hello=False, **kwargs)
    try:
        return await probe.closed()
    finally:
        await probe.close()


async def test_failures_on_every_transport_count_together_and_lock_the_ip_out(serve) -> None:
    dialogue, auth = make(RateLimit(auth_failures="3/minute"))
    srv = await serve(dialogue)
    async with httpx.AsyncClient(base_url=srv.http_url) as client:
        assert (await client.get("/rooms", headers={"X-Token": "guess-1"})).status_code == 401
        assert (await ws_close(srv.ws_url("/ws") + "?token=guess-2"))[0] == 4001
        stream = await SseProbe.open(srv.http_url + "/sse?room=chat&token=guess-3")
        assert stream.status == 401
        await stream.close()
        assert auth.calls == 3
        # the IP used its budget: refused before authenticate, good credentials included
        refused = await client.get("/rooms", headers={"X-Token": "good-alice"})
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "RATE_LIMITED" and error["limit"] == "3/minute"
        assert "failed authentications" in error["message"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        code, reason = await ws_close(srv.ws_url("/ws") + "?token=good-alice")
        assert code == 4008 and "failed authentications" in reason
        locked = await SseProbe.open(srv.http_url + "/sse?room=chat&token=good-alice")
        assert locked.status == 429 and locked.error()["code"] == "RATE_LIMITED"
        await locked.close()
        assert auth.calls == 3, "authenticate must not run for a locked-out IP"
    # another address is unaffected
    transport = httpx.AsyncHTTPTransport(local_address=OTHER_IP)
    async with httpx.AsyncClient(base_url=srv.http_url, transport=transport) as other:
        assert (await other.get("/rooms", headers={"X-Token": "good-bob"})).status_code == 200
    bob = await WsProbe.open(srv.ws_url("/ws") + "?token=good-bob", local_addr=(OTHER_IP, 0))
    assert bob.hello["user_id"] == "bob"
    await bob.close()


async def test_successful_authentications_spend_nothing(serve) -> None:
    dialogue, auth = make(RateLimit(auth_failures="2/minute"))
    srv = await serve(dialogue)
    async with httpx.AsyncClient(base_url=srv.http_url, headers={"X-Token": "good-alice"}) as client:
        for _ in range(10):
            assert (await client.get("/rooms")).status_code == 200
        assert (await client.get("/rooms", headers={"X-Token": "bad"})).status_code == 401
        assert (await client.get("/rooms")).status_code == 200  # one failure of two: still in
    assert auth.calls == 12


async def test_connection_attempts_are_refused_before_authenticate(serve) -> None:
    dialogue, auth = make(RateLimit(connections="2/minute"))
    srv = await serve(dialogue)
    first = await WsProbe.open(srv.ws_url("/ws") + "?token=good-alice")
    assert (await ws_close(srv.ws_url("/ws") + "?token=bad"))[0] == 4001
    assert auth.calls == 2
    code, reason = await ws_close(srv.ws_url("/ws") + "?token=good-alice")
    assert code == 4008 and "connection attempts" in reason
    stream = await SseProbe.open(srv.http_url + "/sse?room=chat&token=good-alice")
    assert stream.status == 429
    await stream.close()
    assert auth.calls == 2
    # REST requests are not connection attempts
    async with httpx.AsyncClient(base_url=srv.http_url, headers={"X-Token": "good-alice"}) as client:
        assert (await client.get("/rooms")).status_code == 200
    await first.request("ping")
    await first.close()


async def test_an_unreachable_storage_refuses_instead_of_waving_through(serve) -> None:
    storage = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    dialogue, auth = make(RateLimit(auth_failures="3/minute", storage=storage))
    srv = await serve(dialogue)
    async with httpx.AsyncClient(base_url=srv.http_url, headers={"X-Token": "good-alice"}) as client:
        refused = await client.get("/rooms")
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "UNAVAILABLE"
        assert (await client.get("/health")).status_code == 200  # probes do not authenticate
    code, reason = await ws_close(srv.ws_url("/ws") + "?token=good-alice")
    assert code == 1013 and "unavailable" in reason
    assert auth.calls == 0
