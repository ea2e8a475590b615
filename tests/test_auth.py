"""Authentication: plain callables and FastAPI dependencies, refusals, anonymity, meta."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import Cookie, Depends, Header
from net_helpers import bearer, http
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Hooks, Identity, Reject, RoomConfig
from dialogue_fastapi.testing import ProbeError

ROOMS = {"chat": RoomConfig(name="Chat")}
TOKENS = {"t-alice": Identity("alice", {"role": "admin"}), "t-bob": Identity("bob", {"role": "member"})}


def by_query_token(conn):  # no annotation: the plain-callable form
    token = conn.query_params.get("token")
    if token is None:
        return None
    if token not in TOKENS:
        raise Reject("bad token")
    return TOKENS[token]


async def by_header(authorization: Annotated[str | None, Header()] = None) -> Identity:
    """A FastAPI dependency with its own parameters."""
    if authorization is None or not authorization.startswith("Bearer "):
        raise Reject("missing bearer token")
    token = authorization.removeprefix("Bearer ")
    if token not in TOKENS:
        raise Reject("bad token")
    return TOKENS[token]


async def assert_refused(probe, url: str, reason: str | None = None, **kwargs: Any) -> None:
    """Accepted, then closed with 4001 before any frame (no hello)."""
    p = await probe(url, hello=False, **kwargs)
    code, got_reason = await p.closed(timeout=2)
    assert code == 4001
    if reason is not None:
        assert got_reason == reason
    assert p.frames.empty(), "a refused connection must not get any frame"
    # the handshake itself succeeded (a browser could read the close code)
    assert p.ws.response is not None and p.ws.response.status_code == 101


# --- plain callable ---------------------------------------------------------------

async def test_plain_callable_reads_token_query(serve, probe):
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_query_token))
    p = await probe(srv.ws_url("/ws?token=t-alice"))
    assert p.hello["op"] == "hello" and p.hello["user_id"] == "alice"
    await p.request("join", room="chat")


async def test_plain_callable_annotated_with_http_connection(serve, probe):
    def authenticate(conn: HTTPConnection) -> Identity:
        return Identity("conn-user:" + conn.url.path)

    srv = await serve(Dialogue(rooms=ROOMS, authenticate=authenticate), prefix="/d")
    p = await probe(srv.ws_url("/d/ws"))
    assert p.hello["user_id"] == "conn-user:/d/ws"


async def test_plain_callable_may_be_async_and_return_a_user_id_string(serve, probe):
    async def authenticate(conn):
        return conn.query_params["token"]

    srv = await serve(Dialogue(rooms=ROOMS, authenticate=authenticate))
    p = await probe(srv.ws_url("/ws?token=carol"))
    assert p.hello["user_id"] == "carol"


async def test_reject_in_plain_callable_closes_4001_with_reason(serve, probe):
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_query_token))
    await assert_refused(probe, srv.ws_url("/ws?token=forged"), "bad token")


async def test_no_credentials_without_allow_anonymous_closes_4001(serve, probe):
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_query_token))
    await assert_refused(probe, srv.ws_url("/ws"))


async def test_no_authenticate_and_no_anonymous_closes_4001(serve, probe):
    srv = await serve(Dialogue(rooms=ROOMS))
    await assert_refused(probe, srv.ws_url("/ws"))


async def test_authenticate_crashing_closes_4001_not_500(serve, probe):
    def authenticate(conn):
        raise RuntimeError("database down")

    srv = await serve(Dialogue(rooms=ROOMS, authenticate=authenticate))
    p = await probe(srv.ws_url("/ws"), hello=False)
    code, reason = await p.closed(timeout=2)
    assert code == 4001
    assert "database down" not in reason  # internals are not leaked
    async with http(srv) as client:
        response = await client.get("/rooms")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


# --- FastAPI dependency ---------------------------------------------------------------

async def test_dependency_with_header_parameter_authenticates(serve, probe):
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_header))
    p = await probe(srv.ws_url("/ws"), additional_headers=bearer("t-bob"))
    assert p.hello["user_id"] == "bob"
    await p.request("join", room="chat")


async def test_reject_in_dependency_closes_4001_with_reason(serve, probe):
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_header))
    await assert_refused(probe, srv.ws_url("/ws"), "bad token", additional_headers=bearer("t-nope"))
    await assert_refused(probe, srv.ws_url("/ws"), "missing bearer token")


async def session_id(session: Annotated[str | None, Cookie()] = None) -> str | None:
    return session


async def by_session_cookie(sid: Annotated[str | None, Depends(session_id)]) -> Identity | None:
    """A dependency with a sub-dependency (module level: annotations are strings here)."""
    return Identity("cookie-" + sid) if sid else None


async def test_dependency_with_sub_dependency_and_cookie(serve, probe):
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_session_cookie))
    p = await probe(srv.ws_url("/ws"), additional_headers={"Cookie": "session=s42"})
    assert p.hello["user_id"] == "cookie-s42"
    await assert_refused(probe, srv.ws_url("/ws"))
    async with http(srv, cookies={"session": "s43"}) as client:
        response = await client.get("/rooms/chat")
    assert response.status_code == 200


async def test_dependency_with_query_parameter(serve, probe):
    async def authenticate(token: str | None = None) -> Identity:
        if token not in TOKENS:
            raise Reject("unknown token")
        return TOKENS[token]

    srv = await serve(Dialogue(rooms=ROOMS, authenticate=authenticate))
    p = await probe(srv.ws_url("/ws?token=t-alice"))
    assert p.hello["user_id"] == "alice"
    await assert_refused(probe, srv.ws_url("/ws?token=zzz"), "unknown token")


async def by_required_header(authorization: Annotated[str, Header()]) -> Identity:
    """The common FastAPI form: a required header (no default)."""
    return Identity(authorization.removeprefix("Bearer "))


async def test_required_header_dependency_authenticates_when_present(serve, probe):
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_required_header))
    p = await probe(srv.ws_url("/ws"), additional_headers=bearer("erin"))
    assert p.hello["user_id"] == "erin"
    async with http(srv, headers=bearer("erin")) as client:
        assert (await client.get("/rooms")).status_code == 200


async def test_missing_required_header_closes_4001_after_accept(serve, probe):
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_required_header))
    await assert_refused(probe, srv.ws_url("/ws"))


async def test_missing_required_header_on_rest_is_401(serve):
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_required_header))
    async with http(srv) as client:
        response = await client.get("/rooms")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


# --- anonymous --------------------------------------------------------------------------

async def test_allow_anonymous_gives_anon_user_id(serve, probe):
    srv = await serve(Dialogue(rooms=ROOMS, allow_anonymous=True))
    a = await probe(srv.ws_url("/ws"))
    b = await probe(srv.ws_url("/ws"))
    assert a.hello["user_id"].startswith("anon_")
    assert b.hello["user_id"].startswith("anon_")
    assert a.hello["user_id"] != b.hello["user_id"]
    joined = await a.request("join", room="chat")
    assert joined["room"]["size"] == 1


async def test_allow_anonymous_with_authenticate_returning_none(serve, probe):
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_query_token, allow_anonymous=True))
    anon = await probe(srv.ws_url("/ws"))
    assert anon.hello["user_id"].startswith("anon_")
    known = await probe(srv.ws_url("/ws?token=t-alice"))
    assert known.hello["user_id"] == "alice"
    # an explicit refusal is still a refusal
    await assert_refused(probe, srv.ws_url("/ws?token=forged"), "bad token")


# --- REST ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/rooms"), ("GET", "/rooms/chat"), ("POST", "/rooms"), ("DELETE", "/rooms/chat"),
     ("GET", "/rooms/chat/history"), ("POST", "/rooms/chat/events"),
     ("GET", "/rooms/chat/presence")],
)
async def test_rest_with_bad_credentials_is_401_unauthorized(serve, method, path):
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_header))
    body = {"room": "x", "name": "X"} if path == "/rooms" else {"event": "e", "data": 1}
    async with http(srv) as client:
        for headers in ({}, bearer("t-forged")):
            response = await client.request(method, path, headers=headers,
                                            json=body if method == "POST" else None)
            assert response.status_code == 401, response.text
            error = response.json()["error"]
            assert error["code"] == "UNAUTHORIZED"
            assert error["message"]
        good = await client.request(method, path, headers=bearer("t-alice"),
                                    json=body if method == "POST" else None)
        assert good.status_code < 400 or good.json()["error"]["code"] != "UNAUTHORIZED"


async def test_rest_reject_reason_is_in_the_401_message(serve):
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_query_token))
    async with http(srv) as client:
        response = await client.get("/rooms", params={"token": "forged"})
    assert response.status_code == 401
    assert response.json()["error"] == {"code": "UNAUTHORIZED", "message": "bad token"}


async def test_rest_with_good_credentials_uses_the_identity(serve):
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_header))
    async with http(srv) as client:
        created = await client.post("/rooms", headers=bearer("t-bob"),
                                    json={"room": "bobs", "name": "Bob's"})
    assert created.status_code == 201
    assert created.json()["created_by"] == "bob"


# --- meta reaches hooks ---------------------------------------------------------------------

async def test_identity_meta_reaches_before_join_and_on_connected(serve, probe):
    seen: list[tuple[str, str, dict[str, Any]]] = []

    def before_join(identity: Identity, room_id: str) -> bool:
        seen.append(("before_join", identity.user_id, dict(identity.meta)))
        if identity.meta.get("role") != "admin":
            raise Reject("admins only")
        return True

    def on_connected(identity: Identity, client_id: str) -> None:
        seen.append(("on_connected", identity.user_id, dict(identity.meta)))

    hooks = Hooks(before_join=before_join, on_connected=on_connected)
    srv = await serve(Dialogue(rooms=ROOMS, authenticate=by_header, hooks=hooks))
    alice = await probe(srv.ws_url("/ws"), additional_headers=bearer("t-alice"))
    bob = await probe(srv.ws_url("/ws"), additional_headers=bearer("t-bob"))
    await alice.request("join", room="chat")
    with pytest.raises(ProbeError) as info:
        await bob.request("join", room="chat")
    assert info.value.code == "JOIN_DENIED"
    assert "admins only" in info.value.message
    assert ("on_connected", "alice", {"role": "admin"}) in seen
    assert ("on_connected", "bob", {"role": "member"}) in seen
    assert ("before_join", "alice", {"role": "admin"}) in seen
    assert ("before_join", "bob", {"role": "member"}) in seen


async def test_identity_meta_reaches_before_each_and_rest_access_checks(serve, probe):
    seen: list[tuple[str, dict[str, Any]]] = []

    def before_each(message, identity):
        seen.append(("before_each", dict(identity.meta) if identity else {}))
        message.meta["role"] = identity.meta["role"]
        return message

    def before_join(identity: Identity, room_id: str) -> bool:
        seen.append(("before_join", dict(identity.meta)))
        return identity.meta.get("role") == "admin"

    dialogue = Dialogue(rooms=ROOMS, authenticate=by_header,
                        hooks=Hooks(before_each=before_each, before_join=before_join))
    srv = await serve(dialogue)
    alice = await probe(srv.ws_url("/ws"), additional_headers=bearer("t-alice"))
    await alice.request("join", room="chat")
    async with http(srv) as client:
        ok = await client.post("/rooms/chat/events", headers=bearer("t-alice"),
                               json={"event": "note", "data": 1})
        refused = await client.post("/rooms/chat/events", headers=bearer("t-bob"),
                                    json={"event": "note", "data": 2})
    assert ok.status_code == 202
    assert refused.status_code == 403
    event = await alice.next("event")
    assert event["meta"] == {"role": "admin"} and event["from"] == "alice"
    assert ("before_each", {"role": "admin"}) in seen
    assert ("before_join", {"role": "member"}) in seen
