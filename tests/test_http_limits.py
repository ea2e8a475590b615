"""Request limits on the REST routes (slowapi) on a real server: per route and per user (another
user unaffected), ``default`` for every route, IP keys, 429 RATE_LIMITED with Retry-After and
the protocol's body, X-RateLimit headers, a budget shared by two nodes through Redis, and an
unreachable storage answering UNAVAILABLE."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import threading
import time

import httpx
import pytest
from redis_helpers import REDIS_URL, delete_prefix, need_redis
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Identity, RateLimit, RoomConfig


def authenticate(conn: HTTPConnection) -> Identity | None:
    user = conn.headers.get("x-user")
    return Identity(user) if user else None


def make(limit: RateLimit) -> Dialogue:
    return Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=authenticate,
                    rate_limit=limit, allow_client_rooms=True)


def client(srv, user: str) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return httpx.AsyncClient(base_url=srv.http_url, headers={"X-User": user})


async def create(http: httpx.AsyncClient) -> httpx.Response:
    return await http.post("/rooms", json={"room": f"r-{secrets.token_hex(4)}", "name": "R"})


async def test_room_creation_is_limited_per_user(serve) -> None:
    srv = await serve(make(RateLimit(http={"create_room": "2/minute"})))
    async with client(srv, "alice") as alice, client(srv, "bob") as bob:
        first, second = await create(alice), await create(alice)
        assert [first.status_code, second.status_code] == [201, 201]
        assert first.headers["X-RateLimit-Limit"] == "2"
        assert [first.headers["X-RateLimit-Remaining"], second.headers["X-RateLimit-Remaining"]] == ["1", "0"]
        refused = await create(alice)
        assert (await create(bob)).status_code == 201  # another user: a budget of their own
        listed = await alice.get("/rooms")  # a route without a limit: no headers, no count
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "RATE_LIMITED" and error["limit"] == "2/minute"
    assert 0 < error["retry_after"] <= 60 and "this route" in error["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert listed.status_code == 200 and "X-RateLimit-Limit" not in listed.headers


async def test_default_gives_every_route_a_budget_of_its_own(serve) -> None:
    srv = await serve(make(RateLimit(http={"default": "1/minute", "history": "3/minute"})))
    async with client(srv, "carol") as carol:
        assert (await carol.get("/rooms")).status_code == 200
        assert (await carol.get("/rooms/chat")).status_code == 429  # "rooms" covers both reads
        assert (await carol.get("/rooms/chat/presence")).status_code == 200
        assert (await carol.get("/rooms/chat/presence")).status_code == 429
        assert [(await carol.get("/rooms/chat/history")).status_code for _ in range(4)] == [
            200, 200, 200, 429]
        assert (await carol.post("/rooms/chat/events", json={"event": "m", "data": 1})).status_code == 202
        assert (await carol.post("/rooms/chat/events", json={"event": "m", "data": 1})).status_code == 429
        for _ in range(3):  # probes are never limited
            assert (await carol.get("/health")).status_code == 200
            assert (await carol.get("/ready")).status_code == 200


async def test_route_and_publish_limits_both_apply_to_rest_publishes(serve) -> None:
    srv = await serve(make(RateLimit(default="2/minute", http={"publish": "3/minute"})))
    body = {"event": "m", "data": 1}
    async with client(srv, "dave") as dave:
        answers = [await dave.post("/rooms/chat/events", json=body) for _ in range(4)]
    assert [a.status_code for a in answers] == [202, 202, 429, 429]
    # the third is refused by the publish budget (2/minute), the fourth by the route's (3/minute)
    assert [a.json()["error"]["limit"] for a in answers[2:]] == ["2/minute", "3/minute"]


async def test_ip_keys_share_one_budget_between_users(serve) -> None:
    srv = await serve(make(RateLimit(key="ip", http={"rooms": "2/minute"})))
    async with client(srv, "erin") as erin, client(srv, "frank") as frank:
        assert (await erin.get("/rooms")).status_code == 200
        assert (await frank.get("/rooms")).status_code == 200
        assert (await erin.get("/rooms")).status_code == 429  # both came from 127.0.0.1


async def test_a_budget_in_redis_is_shared_by_two_nodes(serve) -> None:
    await need_redis()
    prefix = f"dtest{secrets.token_hex(4)}"
    limit = RateLimit(storage=REDIS_URL, prefix=prefix, http={"create_room": "2/minute"})
    a, b = await serve(make(limit)), await serve(make(limit))
    try:
        async with client(a, "gina") as on_a, client(b, "gina") as on_b:
            assert (await create(on_a)).status_code == 201
            assert (await create(on_b)).status_code == 201
            refused = await create(on_a)
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "RATE_LIMITED"
            assert (await create(on_b)).status_code == 429
    finally:
        await delete_prefix(prefix)


async def test_an_unreachable_storage_answers_unavailable_quickly(serve) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = await serve(make(RateLimit(storage=f"redis://127.0.0.1:{port}/0", http={"rooms": "5/minute"})))
    async with client(srv, "hal") as hal:
        started = time.monotonic()
        answer = await hal.get("/rooms")
        took = time.monotonic() - started
        assert (await hal.get("/health")).status_code == 200  # the loop was not left hanging
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "UNAVAILABLE"
    assert took < 5


def test_unknown_route_names_are_refused_in_config() -> None:
    with pytest.raises(ValueError, match="no REST route is called 'create'"):
        RateLimit(http={"create": "1/minute"})
    with pytest.raises(ValueError, match="not a rate limit"):
        RateLimit(http={"publish": "lots"})


async def test_openapi_documents_the_429(serve) -> None:
    srv = await serve(make(RateLimit(http={"create_room": "1/minute"})))
    async with client(srv, "ivy") as ivy:
        spec = (await ivy.get("/openapi.json")).json()
    responses = spec["paths"]["/rooms"]["post"]["responses"]
    assert responses["429"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")


async def test_a_test_can_switch_the_limits_off_and_reset_them(serve) -> None:
    dialogue = make(RateLimit(http={"rooms": "1/minute"}))
    srv = await serve(dialogue)
    limits = dialogue.http_limits
    assert limits is not None and make(RateLimit()).http_limits is None
    async with client(srv, "jo") as jo:
        assert [(await jo.get("/rooms")).status_code for _ in range(2)] == [200, 429]
        limits.reset()
        assert (await jo.get("/rooms")).status_code == 200  # a fresh budget
        limits.limiter.enabled = False
        assert [(await jo.get("/rooms")).status_code for _ in range(3)] == [200] * 3


async def test_a_hung_storage_fails_fast_for_routes_and_publishes(serve) -> None:
    """A Redis that accepts connections and never answers (a listening socket nobody accepts
    from): a limited route answers 503 after slowapi's 0.5 s socket timeout, a publish gets
    UNAVAILABLE after the publish limiter's 2 s; neither hangs."""
    from dialogue_fastapi.testing import WsProbe

    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        url = f"redis://127.0.0.1:{hole.getsockname()[1]}/0"
        srv = await serve(make(RateLimit(storage=url, default="5/minute", http={"rooms": "5/minute"})))
        async with client(srv, "kim") as kim:
            started = time.monotonic()
            answer = await kim.get("/rooms")
            route_took = time.monotonic() - started
        probe = await WsProbe.open(srv.ws_url("/ws"), additional_headers={"X-User": "kim"})
        try:
            await probe.request("join", room="chat")
            started = time.monotonic()
            reply = await probe.reply("publish", room="chat", event="m", data={}, timeout=10)
            publish_took = time.monotonic() - started
            await probe.request("ping")  # the connection carries on
        finally:
            await probe.close()
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "UNAVAILABLE"
    assert route_took < 3
    assert reply["error"]["code"] == "UNAVAILABLE" and publish_took < 6


class SilentRedis:
    """A TCP server that accepts connections and never answers, in a thread of its own so that
    it accepts even while the server's event loop is blocked; ``reached`` is set on the first."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"
        self.reached = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.held.append(conn)
                self.reached.set()

    def close(self) -> None:
        for conn in [*self.held, self.sock]:
            conn.close()


async def test_a_slow_storage_does_not_hold_the_event_loop(serve) -> None:
    """While a limited request waits on its Redis, the server answers other requests: the
    check runs off the event loop (on it, the 503 of the waiting request would come first)."""
    silent = SilentRedis()
    try:
        srv = await serve(make(RateLimit(storage=silent.url, http={"rooms": "5/minute"})))
        async with client(srv, "lee") as lee:
            waiting = asyncio.create_task(lee.get("/rooms"))
            while not silent.reached.is_set():
                await asyncio.sleep(0.005)
            assert (await lee.get("/health")).status_code == 200
            assert not waiting.done(), "the health check waited for the storage's timeout"
            answer = await waiting
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "UNAVAILABLE"
    finally:
        silent.close()


async def test_room_deletion_is_limited_and_carries_the_headers(serve) -> None:
    srv = await serve(make(RateLimit(http={"delete_room": "1/minute"})))
    async with client(srv, "max") as mx:
        rooms = [(await create(mx)).json()["id"] for _ in range(2)]
        deleted = await mx.delete(f"/rooms/{rooms[0]}")
        refused = await mx.delete(f"/rooms/{rooms[1]}")
        still_there = await mx.get(f"/rooms/{rooms[1]}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert deleted.headers["X-RateLimit-Remaining"] == "0"
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "RATE_LIMITED"
    assert still_there.status_code == 200
