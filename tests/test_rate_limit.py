"""Publish rate limits on a real server: per user (another user unaffected), per room, per
event, per connection, never for the server, RATE_LIMITED with retry_after, the 4008 policy,
429 with Retry-After over REST, and one budget shared through Redis by two nodes."""

from __future__ import annotations

import secrets

import httpx
import pytest
from redis_helpers import REDIS_URL, delete_prefix, need_redis
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Identity, RateLimit, RoomConfig
from dialogue_fastapi.testing import WsProbe


def authenticate(conn: HTTPConnection) -> Identity:
    return Identity(conn.query_params.get("token") or conn.headers["x-user"])


async def member(srv, user: str, room: str = "chat") -> WsProbe:  # type: ignore[no-untyped-def]
    probe = await WsProbe.open(srv.ws_url("/ws") + f"?token={user}")
    await probe.request("join", room=room)
    return probe


async def publish(probe: WsProbe, room: str = "chat", event: str = "m") -> dict:
    return await probe.reply("publish", room=room, event=event, data={"x": 1})


def make(limit: RateLimit | None, **rooms: RoomConfig) -> Dialogue:
    rooms = rooms or {"chat": RoomConfig(name="Chat")}
    return Dialogue(rooms=rooms, authenticate=authenticate, rate_limit=limit)


async def test_a_users_budget_is_its_own(serve) -> None:
    dialogue = make(RateLimit(default="3/minute"))
    srv = await serve(dialogue)
    alice, alice2, bob = (await member(srv, "alice"), await member(srv, "alice"),
                          await member(srv, "bob"))
    try:
        assert [("result" in await publish(p)) for p in (alice, alice, alice2)] == [True] * 3
        refused = (await publish(alice))["error"]  # the budget is the user's, not the socket's
        assert refused["code"] == "RATE_LIMITED"
        assert 0 < refused["retry_after"] <= 60 and refused["limit"] == "3/minute"
        assert "result" in await publish(bob)  # another user: unaffected
        for n in range(5):  # the server is never limited
            await dialogue.trigger("chat", "m", {"n": n})
    finally:
        for p in (alice, alice2, bob):
            await p.close()


async def test_room_and_event_limits_and_a_rooms_own(serve) -> None:
    dialogue = make(RateLimit(rooms={"chat": "2/minute"}, events={"typing": "1/minute"}),
                    chat=RoomConfig(name="Chat"), quiet=RoomConfig(name="Quiet", rate_limit="1/minute"))
    srv = await serve(dialogue)
    alice = await member(srv, "alice")
    await alice.request("join", room="quiet")
    try:
        assert "result" in await publish(alice, event="typing")
        assert (await publish(alice, event="typing"))["error"]["code"] == "RATE_LIMITED"
        assert "result" in await publish(alice)  # chat's 2/minute: the typing counted once
        assert (await publish(alice))["error"]["code"] == "RATE_LIMITED"
        assert "result" in await publish(alice, room="quiet")
        assert (await publish(alice, room="quiet"))["error"]["code"] == "RATE_LIMITED"
    finally:
        await alice.close()


async def test_connection_keys_give_each_socket_its_own_budget(serve) -> None:
    srv = await serve(make(RateLimit(default="1/minute", key="connection")))
    first, second = await member(srv, "alice"), await member(srv, "alice")
    try:
        assert "result" in await publish(first)
        assert "result" in await publish(second)
        assert (await publish(first))["error"]["code"] == "RATE_LIMITED"
    finally:
        await first.close()
        await second.close()


async def test_too_many_violations_close_the_connection_with_4008(serve) -> None:
    srv = await serve(make(RateLimit(default="1/minute", max_violations=3, strategy="sliding-window")))
    alice = await member(srv, "alice")
    try:
        assert "result" in await publish(alice)
        for _ in range(3):
            assert (await publish(alice))["error"]["code"] == "RATE_LIMITED"
        goodbye = await alice.next("disconnect")
        assert (goodbye["code"], goodbye["reconnect"]) == (4008, True)
        code, _ = await alice.closed()
        assert code == 4008
    finally:
        await alice.close()


async def test_rest_publishes_get_429_with_retry_after(serve) -> None:
    srv = await serve(make(RateLimit(default="1/minute")))
    async with httpx.AsyncClient(base_url=srv.http_url, headers={"X-User": "carol"}) as client:
        body = {"event": "m", "data": 1}
        assert (await client.post("/rooms/chat/events", json=body)).status_code == 202
        refused = await client.post("/rooms/chat/events", json=body)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_bad_limits_are_refused_in_config() -> None:
    with pytest.raises(ValueError, match="not a rate limit"):
        RateLimit(default="ten per second")
    with pytest.raises(ValueError, match="not a rate limit"):
        RoomConfig(name="x", rate_limit="fast")


async def test_a_budget_in_redis_is_shared_by_two_nodes(serve) -> None:
    await need_redis()
    prefix = f"dtest{secrets.token_hex(4)}"
    limit = RateLimit(default="2/minute", storage=REDIS_URL, prefix=prefix)
    nodes = [await serve(make(limit)) for _ in range(2)]
    on_a, on_b = await member(nodes[0], "dave"), await member(nodes[1], "dave")
    try:
        assert "result" in await publish(on_a)
        assert "result" in await publish(on_b)
        refused = await publish(on_a)  # the third, wherever it lands
        assert refused["error"]["code"] == "RATE_LIMITED"
        assert (await publish(on_b))["error"]["code"] == "RATE_LIMITED"
    finally:
        await on_a.close()
        await on_b.close()
        await delete_prefix(prefix)



async def test_connection_attempts_per_ip_are_limited_on_ws_and_sse(serve) -> None:
    from dialogue_fastapi.testing import SseProbe

    srv = await serve(make(RateLimit(connections="3/minute")))
    first = await WsProbe.open(srv.ws_url("/ws") + "?token=a")
    stream = await SseProbe.open(srv.http_url + "/sse?room=chat&token=a")
    second = await WsProbe.open(srv.ws_url("/ws") + "?token=b")
    try:
        assert stream.status == 200
        refused = await WsProbe.open(srv.ws_url("/ws") + "?token=c", hello=False)
        code, reason = await refused.closed()
        assert code == 4008 and "connection attempts" in reason
        await refused.close()
        too_many = await SseProbe.open(srv.http_url + "/sse?room=chat&token=d")
        assert too_many.status == 429 and too_many.error()["code"] == "RATE_LIMITED"
        assert int(too_many.headers["Retry-After"]) >= 1
        await too_many.close()
        await first.request("ping")  # connections already open are not affected
    finally:
        for probe in (first, second):
            await probe.close()
        await stream.close()


async def test_the_limiter_and_middleware_are_a_dependency_tests_can_override(serve) -> None:
    from fastapi import Depends, FastAPI

    from dialogue_fastapi import EventLimiter, PublishTools, Reject

    dialogue = make(RateLimit(default="1000/minute"))

    async def block_everything(ctx, call_next):  # type: ignore[no-untyped-def]
        raise Reject("blocked by the test's middleware")

    app = FastAPI()
    app.include_router(dialogue.router)

    @app.get("/budget")
    async def budget(tools: PublishTools = Depends(dialogue.publish_tools)) -> dict:  # noqa: B008
        return {"limit": tools.limiter.config.default}

    strict = PublishTools(EventLimiter(RateLimit(default="1/minute")), [])
    app.dependency_overrides[dialogue.publish_tools] = lambda: strict
    srv = await serve(app)
    alice = await member(srv, "alice")
    try:
        assert "result" in await publish(alice)
        assert (await publish(alice))["error"]["code"] == "RATE_LIMITED"  # the override's 1/minute
        async with httpx.AsyncClient(base_url=srv.http_url, headers={"X-User": "bob"}) as client:
            assert (await client.get("/budget")).json() == {"limit": "1/minute"}
            app.dependency_overrides[dialogue.publish_tools] = lambda: PublishTools(
                EventLimiter(RateLimit()), [block_everything])
            refused = await client.post("/rooms/chat/events", json={"event": "m", "data": 1})
            assert refused.status_code == 403
            assert refused.json()["error"]["reason"] == "blocked by the test's middleware"
    finally:
        await alice.close()


async def test_a_limiter_of_your_own_through_the_dependency(serve) -> None:
    """Any ``Limiter`` works, not only ``EventLimiter``; its own violation policy closes (4008)."""
    from fastapi import FastAPI

    from dialogue_fastapi import Limiter, PublishTools
    from dialogue_fastapi.core.errors import RateLimited

    class OddOnly:
        """Refuses every second publish of a user; two refusals close the connection."""

        max_violations = 2
        violation_window = 60.0

        def __init__(self) -> None:
            self.counts: dict[str, int] = {}

        async def check(self, room, event, sender) -> None:  # type: ignore[no-untyped-def]
            self.counts[sender.user_id] = self.counts.get(sender.user_id, 0) + 1
            if self.counts[sender.user_id] % 2 == 0:
                raise RateLimited("even publishes are refused", retry_after=1.0, limit="odd only")

        async def check_connection(self, ip: str | None) -> None:
            return None

        async def check_auth(self, ip: str | None) -> None:
            return None

        async def auth_failed(self, ip: str | None) -> None:
            return None

    limiter: Limiter = OddOnly()
    dialogue = make(None)  # no RateLimit in the app's config at all
    app = FastAPI()
    app.include_router(dialogue.router)
    app.dependency_overrides[dialogue.publish_tools] = lambda: PublishTools(limiter, [])
    srv = await serve(app)
    alice = await member(srv, "alice")
    try:
        assert "result" in await publish(alice)
        refused = (await publish(alice))["error"]
        assert refused["code"] == "RATE_LIMITED" and refused["limit"] == "odd only"
        assert "result" in await publish(alice)
        await publish(alice)  # the second refusal: closed
        code, reason = await alice.closed()
        assert code == 4008 and "2 rate-limit violations" in reason
    finally:
        await alice.close()
