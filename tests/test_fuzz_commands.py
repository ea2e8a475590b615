"""Seeded random commands, mostly well-formed, some not, from several connections at once: every
command with an id gets exactly one reply, none of them INTERNAL, no traceback is logged, and
every connection still answers a ping afterwards. (The targeted cases are in test_bad_input.py.)"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import pytest
from pydantic import BaseModel
from websockets.asyncio.client import connect

from dialogue_fastapi import Dialogue, RateLimit, RoomConfig, define_event
from dialogue_fastapi.middleware import content_filter

COMMANDS_PER_CONNECTION = 600
CONNECTIONS = 4

OPS = ["join", "join", "publish", "publish", "publish", "leave", "history", "subscribe",
       "unsubscribe", "create_room", "delete_room", "ping", "presence", "rooms", "no_such_op"]
# per field: the first two values are well-formed, the rest are not
FIELDS: dict[str, list[Any]] = {
    "room": ["chat", "free", "r1", "", "x" * 200, "bad room", None, 5],
    "event": ["message", "typing", "", "x" * 300, None, 3, ["a"]],
    "data": [{"text": "hi"}, {"text": "spam here"}, {"text": 5}, None, [1, 2],
             {"a": {"b": {"c": [1]}}}, 1e308, -1],
    "meta": [{}, {"k": "v"}, None, 3, []],
    "idempotency_key": ["k1", "k2", "", "k" * 200, 7],
    "subscriptions": ["*", ["message"], [], "x", [1], {"a": 1}],
    "since": [{"seq": 0, "epoch": "e"}, {"seq": 3, "epoch": "e"}, {"seq": -1, "epoch": ""},
              {"seq": 2**70, "epoch": "x" * 500}, "s", {"seq": "1"}],
    "history": [0, 5, 1001, -1, "3", 2**63],
    "events": ["*", ["message"], [], "x", [3]],
    "limit": [1, 20, 0, 1001, "5", 2**64],
    "before": [0, 5, -3, "x", 2**64],
    "after": [0, 3, -1, 1.5],
    "sender": ["u", "anon", "x" * 300, 4],
    "since_ts": [0, 1, -1, 2**64],
    "name": ["N", "M", "", "x" * 300],
    "max_size": [1, 5, 0, -1, 2**64],
    "presence_events": [True, False, "yes"],
    "sync_history_on_join": [0, 5, 2000, -1],
}
BAD_IDS: list[Any] = ["x", -1, None, 2**70, 1.5]


class Text(BaseModel):
    text: str


message = define_event("message", Text, history=50)


def command(rnd: random.Random, command_id: int) -> dict[str, Any]:
    frame: dict[str, Any] = {"op": rnd.choice(OPS), "id": command_id}
    for key in rnd.sample(sorted(FIELDS), rnd.randint(0, 6)):
        options = FIELDS[key]
        frame[key] = rnd.choice(options[:2]) if rnd.random() < 0.85 else rnd.choice(options)
    if "room" not in frame and rnd.random() < 0.7:
        frame["room"] = rnd.choice(FIELDS["room"][:3])
    return frame


async def run_connection(url: str, seed: int) -> dict[str, int]:
    """Send the commands without waiting, then read until each numbered one has its reply;
    the error codes seen. (json, not orjson: some values are beyond 64-bit integers.)"""
    rnd = random.Random(seed)
    codes: dict[str, int] = {}
    async with connect(url, max_size=None) as ws:
        assert json.loads(await ws.recv())["op"] == "hello"
        waiting: set[int] = set()
        for n in range(COMMANDS_PER_CONNECTION):
            frame = command(rnd, n)
            if rnd.random() < 0.03:  # a malformed id: an error frame, no reply to wait for
                frame["id"] = rnd.choice(BAD_IDS)
            else:
                waiting.add(n)
            await ws.send(json.dumps(frame))
        await ws.send(json.dumps({"op": "ping", "id": COMMANDS_PER_CONNECTION}))
        waiting.add(COMMANDS_PER_CONNECTION)
        async with asyncio.timeout(30):
            while waiting:
                frame = json.loads(await ws.recv())
                if isinstance(frame.get("id"), int) and frame["id"] in waiting:
                    waiting.discard(frame["id"])
                error = frame.get("error")
                if isinstance(error, dict):
                    codes[error["code"]] = codes.get(error["code"], 0) + 1
    return codes


@pytest.mark.parametrize("seed", [1, 2])
async def test_random_commands_get_protocol_errors_and_no_crash(serve, tmp_path, caplog, seed) -> None:
    dialogue = Dialogue(
        rooms={"chat": RoomConfig(name="Chat", events=[message], max_size=50, presence_events=True),
               "free": RoomConfig(name="Free", sync_history_on_join=5)},
        allow_anonymous=True, allow_client_rooms=True, middleware=[content_filter(["spam"])],
        persistence=f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}",
        rate_limit=RateLimit(default="100000/minute"),
    )
    srv = await serve(dialogue)
    caplog.set_level(logging.WARNING, logger="dialogue_fastapi")
    results = await asyncio.gather(*[run_connection(srv.ws_url("/ws"), seed * 100 + k)
                                     for k in range(CONNECTIONS)])
    seen: dict[str, int] = {}
    for codes in results:
        for code, count in codes.items():
            seen[code] = seen.get(code, 0) + count
    assert "INTERNAL" not in seen, seen
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    # the mix reached past parsing: refusals from deeper steps than BAD_REQUEST
    assert {"NOT_IN_ROOM", "ROOM_NOT_FOUND", "FORBIDDEN"} & set(seen), seen
