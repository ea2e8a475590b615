"""One input, one answer: the same refusal code on every transport where the operation exists.

A table of rows (operation, input, expected protocol code) runs against one real server
over the WebSocket ops, the REST routes, ``GET /sse`` (refusals come before the stream) and
the ``Dialogue`` facade. REST and SSE answers must also carry the HTTP status of the
protocol's table (PROTOCOL.md section 3), which is written out here, not read from the
library. Where the use case itself defines a transport-specific answer (``before_join``
refusals, membership) the row says so in ``per_transport``; where a transport cannot
express an input the row names the transport and why in ``skip`` and that cell is not
generated (``test_table_is_well_formed`` keeps those reasons honest).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection
from websockets.asyncio.client import ClientConnection, connect

from dialogue_fastapi import (
    Dialogue,
    DialogueError,
    Hooks,
    Identity,
    RateLimit,
    Reject,
    RoomConfig,
    define_event,
)
from dialogue_fastapi.testing import LiveServer, SseProbe

#: PROTOCOL.md section 3: the HTTP status of each code in REST (and for /sse refusals)
STATUS: Mapping[str, int] = {
    "BAD_REQUEST": 400, "UNAUTHORIZED": 401, "FORBIDDEN": 403, "ROOM_NOT_FOUND": 404,
    "ROOM_EXISTS": 409, "ROOM_FULL": 409, "JOIN_DENIED": 403, "NOT_IN_ROOM": 409,
    "EVENT_NOT_ALLOWED": 403, "VALIDATION_FAILED": 422, "RATE_LIMITED": 429, "BLOCKED": 403,
    "PAYLOAD_TOO_LARGE": 413, "UNAVAILABLE": 503, "INTERNAL": 500,
}
#: what a successful REST call answers
OK_STATUS: Mapping[str, int] = {"publish": 202, "create_room": 201}

MAX_SIZE = 2048
MAX_DEPTH = 8
TRANSPORTS = ("ws", "rest", "sse", "facade")
#: the transports on which each operation exists
OPERATIONS: Mapping[str, tuple[str, ...]] = {
    "publish": ("ws", "rest", "facade"),
    "history": ("ws", "rest", "facade"),
    "presence": ("ws", "rest", "facade"),
    "room": ("rest", "facade"),  # GET /rooms/{room}, dialogue.room(id)
    "create_room": ("ws", "rest", "facade"),
    "join": ("ws", "sse"),
    "subscribe": ("ws",),
    "unsubscribe": ("ws",),
}
#: in a room id or user id, replaced by the transport: each cell has its own room / budget
T = "%T"


class Text(BaseModel):
    text: str = Field(min_length=1, max_length=200)


message = define_event("message", Text, history=50)


def refuse_mallory(identity: Identity, room_id: str) -> None:
    """``before_join``: "mallory" (every transport's "mallory-<transport>") may not see "chat"."""
    if room_id == "chat" and identity.user_id.split("-")[0] == "mallory":
        raise Reject("mallory is banned from chat")


def authenticate(conn: HTTPConnection) -> Identity | None:
    header = conn.headers.get("authorization", "")
    user = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
    user = user or conn.query_params.get("token")
    return Identity(user) if user else None


def deep(depth: int) -> Any:
    """A JSON value whose nesting depth (as ``rules.json_depth`` counts it) is ``depth``."""
    value: Any = 0
    for _ in range(depth - 1):
        value = [value]
    return value


# --- the table -------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One input to one operation and the answer every transport must give (None: ok)."""

    name: str
    op: str
    code: str | None
    room: str = "open"
    user: str = "alice"
    params: Mapping[str, Any] = field(default_factory=dict)
    #: a transport's own answer, where the use case defines one (see the row's comment)
    per_transport: Mapping[str, str | None] = field(default_factory=dict)
    #: cells a transport cannot express: transport -> why
    skip: Mapping[str, str] = field(default_factory=dict)
    #: rooms a WebSocket caller joins before the call
    joins: tuple[str, ...] = ("open", "chat")
    #: calls made first with the same user (to spend a budget), answers not checked
    setup: tuple[tuple[str, str, Mapping[str, Any]], ...] = ()
    #: REST only: how the body is sent ("json", "sized" raw bytes, "chunked" raw bytes)
    body: str = "json"

    def expected(self, transport: str) -> str | None:
        return self.per_transport.get(transport, self.code)


BAD_ROOMS = (("newline", "lobby\n"), ("space", "a b"), ("nul", "x\x00"), ("200-chars", "r" * 200))
BAD_EVENTS = (("newline", "a\nb"), ("sse-injection", "evil\r\nid: junk"), ("nul", "x\x00"),
              ("129-chars", "e" * 129), ("empty", ""))
SERVER_NOT_REFUSED = "the application (facade) is never refused by before_join"
SERVER_NOT_LIMITED = "the application (facade) is never rate limited nor counted in max_rooms_per_user"
FACADE_TAKES_CONFIG = "the facade takes a RoomConfig of EventDefinitions: no names to refuse"
RAW_BODY_REST = "a raw HTTP body exists on REST only"

GOOD = {"event": "note", "data": {"x": 1}}
CHAT_GOOD = {"event": "message", "data": {"text": "hi"}}


def _publish_cases() -> list[Case]:
    cases = [
        Case("allowed", "publish", None, params=GOOD),
        Case("allowed-declared", "publish", None, room="chat", params=CHAT_GOOD),
        Case("at-depth-limit", "publish", None, params={"event": "note", "data": deep(MAX_DEPTH)}),
        # the use case: a REST caller (no connection) asks before_join -> FORBIDDEN; a
        # WebSocket that could not join is simply not a member -> NOT_IN_ROOM
        Case("before-join-refused", "publish", "FORBIDDEN", room="chat", user="mallory",
             params=CHAT_GOOD, joins=("open",), per_transport={"ws": "NOT_IN_ROOM"},
             skip={"facade": SERVER_NOT_REFUSED}),
        # only a WebSocket has a membership; REST and the application publish without one
        Case("not-a-member", "publish", None, user="stranger", params=GOOD, joins=(),
             per_transport={"ws": "NOT_IN_ROOM"}),
        Case("unknown-room", "publish", "ROOM_NOT_FOUND", room="nowhere", params=GOOD),
        Case("undeclared-event", "publish", "EVENT_NOT_ALLOWED", room="chat",
             params={"event": "nope", "data": {"text": "hi"}}),
        Case("schema-failure", "publish", "VALIDATION_FAILED", room="chat",
             params={"event": "message", "data": {"text": "t" * 201}}),
        Case("too-large-data", "publish", "PAYLOAD_TOO_LARGE",
             params={"event": "note", "data": "d" * (MAX_SIZE + 100)}),
        Case("too-large-data-plus-meta", "publish", "PAYLOAD_TOO_LARGE",
             params={"event": "note", "data": "d" * 1500, "meta": {"m": "m" * 700}}),
        Case("raw-body-with-content-length", "publish", "PAYLOAD_TOO_LARGE", body="sized",
             params=GOOD, skip={"ws": RAW_BODY_REST, "facade": RAW_BODY_REST}),
        Case("raw-body-chunked", "publish", "PAYLOAD_TOO_LARGE", body="chunked",
             params=GOOD, skip={"ws": RAW_BODY_REST, "facade": RAW_BODY_REST}),
        Case("too-deep-data", "publish", "BAD_REQUEST",
             params={"event": "note", "data": deep(MAX_DEPTH + 1)}),
        Case("too-deep-meta", "publish", "BAD_REQUEST",
             params={"event": "note", "data": 1, "meta": {"m": deep(MAX_DEPTH)}}),
        Case("nul-in-data", "publish", "BAD_REQUEST", params={"event": "note", "data": {"t": "a\x00b"}}),
        Case("nul-in-data-key", "publish", "BAD_REQUEST", params={"event": "note", "data": {"a\x00": 1}}),
        Case("nul-in-meta", "publish", "BAD_REQUEST",
             params={"event": "note", "data": 1, "meta": {"m": "a\x00"}}),
        Case("nul-in-idempotency-key", "publish", "BAD_REQUEST",
             params={"event": "note", "data": 1, "idempotency_key": "k\x00"}),
        # "chat" allows 3 events a minute per user: the 4th is refused
        Case("rate-limited", "publish", "RATE_LIMITED", room="chat", user="talker", params=CHAT_GOOD,
             setup=(("publish", "chat", CHAT_GOOD),) * 3, skip={"facade": SERVER_NOT_LIMITED}),
    ]
    for label, room in BAD_ROOMS:
        cases.append(Case(f"bad-room-{label}", "publish", "BAD_REQUEST", room=room, params=GOOD))
    for label, event in BAD_EVENTS:
        cases.append(Case(f"bad-event-{label}", "publish", "EVENT_NOT_ALLOWED",
                          params={"event": event, "data": 1}))
    return cases


def _room_id_cases(op: str, **extra: Any) -> list[Case]:
    cases = [Case("unknown-room", op, "ROOM_NOT_FOUND", room="nowhere", **extra)]
    for label, room in BAD_ROOMS:
        cases.append(Case(f"bad-room-{label}", op, "BAD_REQUEST", room=room, **extra))
    return cases


def _history_cases() -> list[Case]:
    cases = [
        Case("allowed", "history", None),
        # a WebSocket must have joined to read history (NOT_IN_ROOM before before_join);
        # REST asks before_join -> FORBIDDEN
        Case("before-join-refused", "history", "FORBIDDEN", room="chat", user="mallory",
             joins=("open",), per_transport={"ws": "NOT_IN_ROOM"}, skip={"facade": SERVER_NOT_REFUSED}),
        Case("not-a-member", "history", None, user="stranger", joins=(),
             per_transport={"ws": "NOT_IN_ROOM"}),
        Case("before-2**63", "history", "BAD_REQUEST", params={"before": 2**63}),
        Case("until_ts-10**30", "history", "BAD_REQUEST", params={"until_ts": 10**30}),
        Case("after-negative", "history", "BAD_REQUEST", params={"after": -1}),
        Case("nul-in-sender", "history", "BAD_REQUEST", params={"sender": "a\x00"}),
    ]
    for label, event in BAD_EVENTS:
        cases.append(Case(f"bad-event-{label}", "history", "EVENT_NOT_ALLOWED", params={"event": event}))
    return cases + _room_id_cases("history")


def _presence_and_room_cases() -> list[Case]:
    cases: list[Case] = []
    for op in ("presence", "room"):
        cases += [
            Case("allowed", op, None),
            Case("not-a-member", op, None, user="stranger", joins=()),
            # presence and details ask before_join on every transport -> FORBIDDEN
            Case("before-join-refused", op, "FORBIDDEN", room="chat", user="mallory",
                 joins=("open",), skip={"facade": SERVER_NOT_REFUSED}),
        ]
        cases += _room_id_cases(op)
    return cases


def _create_room_cases() -> list[Case]:
    # create_room counts in RateLimit(http={"create_room": "3/minute"}) per user, on REST and
    # WebSocket alike, before max_rooms_per_user (2) is checked
    room_of = {"name": "Made", "events": ["message"]}
    owns_two = (("create_room", f"own1-{T}", {"name": "1"}), ("create_room", f"own2-{T}", {"name": "2"}))
    cases = [
        Case("allowed", "create_room", None, room=f"made-{T}", user="maker", params=room_of),
        Case("room-exists", "create_room", "ROOM_EXISTS", room="chat", user="maker2", params=room_of),
        Case("undefined-event", "create_room", "EVENT_NOT_ALLOWED", room=f"ev-{T}", user="maker3",
             params={"name": "x", "events": ["nope"]}, skip={"facade": FACADE_TAKES_CONFIG}),
        Case("third-room-of-a-user", "create_room", "FORBIDDEN", room=f"own3-{T}", user="owner",
             params={"name": "3"}, setup=owns_two, skip={"facade": SERVER_NOT_LIMITED}),
        # three refused creates (the room exists) spend the budget: the 4th is RATE_LIMITED
        Case("rate-limited", "create_room", "RATE_LIMITED", room=f"late-{T}", user="hurried",
             params={"name": "x"}, setup=(("create_room", "chat", {"name": "x"}),) * 3,
             skip={"facade": SERVER_NOT_LIMITED}),
    ]
    for label, room in BAD_ROOMS:
        cases.append(Case(f"bad-room-{label}", "create_room", "BAD_REQUEST", room=room,
                          user=f"badroom_{label}", params={"name": "x"}))
    return cases


def _join_cases() -> list[Case]:
    cases = [
        Case("allowed", "join", None, joins=()),
        Case("allowed-subscriptions", "join", None, room="chat", joins=(),
             params={"subscriptions": ["message"]}),
        Case("any-name-in-open-room", "join", None, joins=(), params={"subscriptions": ["whatever"]}),
        # the join itself runs before_join: JOIN_DENIED on both live transports
        Case("before-join-refused", "join", "JOIN_DENIED", room="chat", user="mallory", joins=()),
        Case("undeclared-event", "join", "EVENT_NOT_ALLOWED", room="chat", joins=(),
             params={"subscriptions": ["nope"]}),
        Case("too-many-names", "join", "BAD_REQUEST", joins=(),
             params={"subscriptions": [f"e{i}" for i in range(65)]}),
    ]
    for label, event in BAD_EVENTS:
        # /sse?events= (empty) means "no filter": an empty name cannot be expressed there
        skip = {"sse": "an empty events= query means no filter on /sse"} if not event else {}
        cases.append(Case(f"bad-event-{label}", "join", "EVENT_NOT_ALLOWED", joins=(),
                          params={"subscriptions": [event]}, skip=skip))
    return cases + _room_id_cases("join", joins=())


def _subscription_cases() -> list[Case]:
    cases: list[Case] = []
    for op in ("subscribe", "unsubscribe"):
        cases += [
            Case("allowed", op, None, params={"events": ["x"]}),
            Case("allowed-declared", op, None, room="chat", params={"events": ["message"]}),
            Case("not-a-member", op, "NOT_IN_ROOM", user="stranger", joins=(), params={"events": ["x"]}),
            Case("undeclared-event", op, "EVENT_NOT_ALLOWED", room="chat", params={"events": ["nope"]}),
            Case("too-many-names", op, "BAD_REQUEST", params={"events": [f"e{i}" for i in range(65)]}),
        ]
        for label, event in BAD_EVENTS:
            cases.append(Case(f"bad-event-{label}", op, "EVENT_NOT_ALLOWED", params={"events": [event]}))
        cases += _room_id_cases(op, params={"events": ["x"]})
    return cases


CASES: list[Case] = [*_publish_cases(), *_history_cases(), *_presence_and_room_cases(),
                     *_create_room_cases(), *_join_cases(), *_subscription_cases()]


def _cells() -> list[Any]:
    cells = []
    for case in CASES:
        for transport in OPERATIONS[case.op]:
            if transport in case.skip:  # the reason stays in the table, the cell is not run
                continue
            cells.append(pytest.param(case, transport, id=f"{case.op}-{case.name}-{transport}"))
    return cells


def test_table_is_well_formed() -> None:
    names = [(case.op, case.name) for case in CASES]
    assert len(names) == len(set(names)), "two rows share a test id"
    for case in CASES:
        assert case.op in OPERATIONS
        assert set(case.skip) <= set(OPERATIONS[case.op]), case
        assert set(case.per_transport) <= set(OPERATIONS[case.op]), case
        for code in (case.code, *case.per_transport.values()):
            assert code is None or code in STATUS


# --- the server and the four front ends -------------------------------------------------

class WsClient:
    """A raw protocol client that encodes with the standard library (integers of any size)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.joined: set[str] = set()
        self._next = 0

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        self._next += 1
        await self.ws.send(json.dumps({"op": op, "id": self._next, **fields}))
        async with asyncio.timeout(5):
            while True:
                frame = json.loads(await self.ws.recv())
                if frame.get("id") == self._next:
                    return dict(frame)
                assert frame.get("op") != "error", frame  # an error tied to no command

    async def join(self, rooms: tuple[str, ...]) -> None:
        for room in rooms:
            if room not in self.joined:
                reply = await self.call("join", room=room)
                assert reply["ok"], reply
                self.joined.add(room)


@dataclass
class Outcome:
    code: str | None
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class Env:
    def __init__(self, dialogue: Dialogue, srv: LiveServer, http: httpx.AsyncClient) -> None:
        self.dialogue, self.srv, self.http = dialogue, srv, http
        self.clients: dict[str, WsClient] = {}

    async def ws(self, user: str) -> WsClient:
        if user not in self.clients:
            ws = await connect(self.srv.ws_url("/ws") + "?token=" + quote(user), compression=None)
            hello = json.loads(await ws.recv())
            assert hello["op"] == "hello"
            self.clients[user] = WsClient(ws)
        return self.clients[user]

    async def run(self, transport: str, case: Case, op: str, room: str, user: str,
                  params: Mapping[str, Any]) -> Outcome:
        if transport == "ws":
            return await self._ws(case, op, room, user, params)
        if transport == "rest":
            return await self._rest(case, op, room, user, params)
        if transport == "sse":
            return await self._sse(room, user, params)
        return await self._facade(op, room, params)

    async def _ws(self, case: Case, op: str, room: str, user: str, params: Mapping[str, Any]) -> Outcome:
        if op == "join":  # a fresh connection, so every join is a first one
            ws = await connect(self.srv.ws_url("/ws") + "?token=" + quote(user), compression=None)
            try:
                await ws.recv()
                reply = await WsClient(ws).call("join", room=room, **params)
            finally:
                await ws.close()
        else:
            client = await self.ws(user)
            await client.join(case.joins)
            reply = await client.call(op, room=room, **params)
        return Outcome(None if reply["ok"] else reply["error"]["code"])

    async def _rest(self, case: Case, op: str, room: str, user: str, params: Mapping[str, Any]) -> Outcome:
        headers = {"Authorization": f"Bearer {user}"}
        path = "/rooms/" + quote(room, safe="")
        if op == "publish":
            if case.body == "json":
                response = await self.http.post(path + "/events", json=dict(params), headers=headers)
            else:
                raw = json.dumps({**params, "data": "z" * (MAX_SIZE + 10)}).encode()

                async def chunks() -> AsyncIterator[bytes]:
                    for start in range(0, len(raw), 500):
                        yield raw[start:start + 500]

                content: Any = raw if case.body == "sized" else chunks()
                response = await self.http.post(path + "/events", content=content, headers={
                    **headers, "Content-Type": "application/json"})
                if case.body == "chunked":
                    assert response.request.headers.get("transfer-encoding") == "chunked"
                    assert "content-length" not in response.request.headers
        elif op == "history":
            response = await self.http.get(path + "/history", params=dict(params), headers=headers)
        elif op == "presence":
            response = await self.http.get(path + "/presence", headers=headers)
        elif op == "room":
            response = await self.http.get(path, headers=headers)
        else:
            assert op == "create_room"
            response = await self.http.post("/rooms", json={"room": room, **params}, headers=headers)
        if response.is_success:
            assert response.status_code == OK_STATUS.get(op, 200), response.text
            return Outcome(None, response.status_code)
        return Outcome(response.json()["error"]["code"], response.status_code, response.headers)

    async def _sse(self, room: str, user: str, params: Mapping[str, Any]) -> Outcome:
        query = [("room", room), ("token", user)]
        if "subscriptions" in params:
            query.append(("events", ",".join(params["subscriptions"])))
        probe = await SseProbe.open(self.srv.http_url + "/sse?" + urlencode(query))
        try:
            if probe.status == 200:
                assert probe.hello["op"] == "hello"
                return Outcome(None, 200)
            return Outcome(probe.error()["code"], probe.status, probe.headers)
        finally:
            await probe.close()

    async def _facade(self, op: str, room: str, params: Mapping[str, Any]) -> Outcome:
        d = self.dialogue
        try:
            if op == "publish":
                await d.trigger(room, params["event"], params.get("data"), meta=params.get("meta"),
                                idempotency_key=params.get("idempotency_key"))
            elif op == "history":
                await d.history(room, params.get("event"), before=params.get("before"),
                                after=params.get("after"), sender=params.get("sender"),
                                until=params.get("until_ts"))
            elif op == "presence":
                await d.presence(room)
            elif op == "room":
                d.room(room)
            else:
                assert op == "create_room"
                await d.create_room(room, RoomConfig(name=params["name"]))
        except DialogueError as exc:
            assert type(exc).status == STATUS[exc.code], exc
            return Outcome(exc.code)
        return Outcome(None)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    dialogue = Dialogue(
        rooms={"chat": RoomConfig(name="Chat", events=[message]), "open": RoomConfig(name="Open", events=[])},
        events=[message], authenticate=authenticate, hooks=Hooks(before_join=refuse_mallory),
        max_message_size=MAX_SIZE, max_json_depth=MAX_DEPTH, allow_client_rooms=True,
        max_rooms_per_user=2,
        rate_limit=RateLimit(rooms={"chat": "3/minute"}, http={"create_room": "3/minute"}),
    )
    from fastapi import FastAPI

    app = FastAPI()
    app.include_router(dialogue.router)
    srv = LiveServer(app, "127.0.0.1", 0)
    await srv.start()
    try:
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=5.0) as http:
            environment = Env(dialogue, srv, http)
            yield environment
            for client in environment.clients.values():
                with contextlib.suppress(Exception):
                    await client.ws.close()
    finally:
        await srv.stop()


@pytest.mark.parametrize(("case", "transport"), _cells())
async def test_same_answer(env: Env, case: Case, transport: str) -> None:
    user = f"{case.user}-{transport}"
    for op, room, params in case.setup:
        await env.run(transport, case, op, room.replace(T, transport), user, params)
    outcome = await env.run(transport, case, case.op, case.room.replace(T, transport), user, case.params)
    expected = case.expected(transport)
    assert outcome.code == expected, f"{case.op} {case.name} over {transport}: {outcome}"
    if transport in ("rest", "sse") and expected is not None:
        assert outcome.status == STATUS[expected], outcome
        if expected == "RATE_LIMITED":
            assert int(outcome.headers["retry-after"]) >= 1


async def test_create_room_budget_counts_the_same_requests_on_every_transport(env: Env) -> None:
    """``RoomAdministration``: the create_room budget is "limited the same on every transport".
    The same sequence (three malformed creates, then a good one) must get the same answers
    over WebSocket and REST, whichever requests the budget counts."""
    answers: dict[str, list[str | None]] = {}
    for transport in ("ws", "rest"):
        user = f"sequence-{transport}"
        case = Case("sequence", "create_room", None)
        seen = [(await env.run(transport, case, "create_room", room, user, {"name": "x"})).code
                for room in ("a b", "lobby\n", "x\x00")]
        seen.append((await env.run(transport, case, "create_room", f"seq-{transport}", user,
                                   {"name": "x"})).code)
        answers[transport] = seen
    assert answers["ws"] == answers["rest"], answers
