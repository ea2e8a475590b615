"""Connections: slow consumers, heartbeat, graceful shutdown, and configuration sources."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from net_helpers import drain_frames, dumps, open_stalled_reader, raw_request, wait_until
from pydantic import BaseModel, ValidationError
from websockets.exceptions import ConnectionClosed

from dialogue_fastapi import Dialogue, DialogueConfig, Hooks, RoomConfig, define_event
from dialogue_fastapi.testing import ProbeError

PAD = "x" * 8000  # big events fill socket buffers quickly
BURST = 3000  # 24 MB per member: far beyond any kernel socket buffer


class Text(BaseModel):
    text: str


message = define_event("message", Text, history=50)
typing = define_event("typing")


def chat(**settings: Any) -> Dialogue:
    settings.setdefault("allow_anonymous", True)
    return Dialogue(rooms={"chat": RoomConfig(name="Chat")}, **settings)


async def read_until_closed(ws, timeout: float = 5.0) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                frames.append(orjson.loads(await ws.recv()))
    return frames


def assert_closed_as_slow(stalled, frames: list[dict[str, Any]], conn: Any) -> None:
    """The server closed ``conn`` with 4009; what the stalled client saw of it.

    The disconnect frame follows the events, unless the reader stayed stalled longer than
    CLOSE_GRACE (a loaded machine): then the writer is cut and only the close is sent;
    stalled longer still, uvicorn holds even the close frame back (its send waits for the
    socket to drain) and drops the TCP connection: the client sees 1006 and no disconnect.
    """
    assert conn.close_code == 4009 and conn.dropped_by_overflow
    disconnects = [f for f in frames if f.get("op") == "disconnect"]
    assert disconnects in ([], [frames[-1]])
    assert stalled.close_code == 4009 or (stalled.close_code == 1006 and not disconnects)
    for frame in disconnects:
        assert frame == {"op": "disconnect", "code": 4009, "reason": frame["reason"], "reconnect": True}


# --- slow consumers -------------------------------------------------------------------

async def test_slow_consumer_is_closed_4009_and_the_room_keeps_its_rate(serve, probe):
    dialogue = chat(send_queue_max_messages=20)
    srv = await serve(dialogue)
    stalled, hello = await open_stalled_reader(srv.ws_url("/ws"))
    conn = dialogue.runtime.hub.connections[hello["client_id"]]
    try:
        assert (await raw_request(stalled, "join", 1, room="chat"))["ok"] is True
        fast = await probe(srv.ws_url("/ws"))
        await fast.request("join", room="chat")
        # publishing never waits for the stalled reader: the whole burst goes out at once
        async with asyncio.timeout(2):
            for i in range(1, BURST + 1):
                await dialogue.trigger("chat", "tick", {"i": i, "pad": PAD})
                await asyncio.sleep(0)  # as if each event came from its own request
        # the reader that keeps up gets every event, in order
        received = await fast.events(BURST, timeout=2)
        assert [e["seq"] for e in received] == list(range(1, BURST + 1))
        assert [e["data"]["i"] for e in received] == list(range(1, BURST + 1))
        await fast.request("ping")
        # the stalled reader, once it reads: a prefix of the events, then disconnect, then 4009
        frames = await read_until_closed(stalled, timeout=3)
        assert_closed_as_slow(stalled, frames, conn)
        seqs = [f["seq"] for f in frames if f.get("op") == "event"]
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) < BURST, "the stalled client cannot have been sent everything"
    finally:
        stalled.transport.abort()


async def test_slow_consumer_reconnects_and_recovers_what_it_missed(serve, probe):
    dialogue = chat(send_queue_max_messages=20, recovery_window=BURST + 10)
    srv = await serve(dialogue)
    stalled, hello = await open_stalled_reader(srv.ws_url("/ws"))
    # runtime internals only to stop soon after the overflow (keeps the gap under 1000)
    conn = dialogue.runtime.hub.connections[hello["client_id"]]
    try:
        joined = await raw_request(stalled, "join", 1, room="chat")
        epoch = joined["result"]["position"]["epoch"]
        sent, after_overflow = 0, 0
        while after_overflow < 50 and sent < BURST:
            sent += 1
            await dialogue.trigger("chat", "tick", {"i": sent, "pad": PAD})
            await asyncio.sleep(0)
            after_overflow += conn.closed
        assert conn.closed, "the stalled client should have overflowed"
        frames = await read_until_closed(stalled, timeout=3)
        assert_closed_as_slow(stalled, frames, conn)
    finally:
        stalled.transport.abort()
    last = max((f["seq"] for f in frames if f.get("op") == "event"), default=0)
    assert sent - last < 1000
    again = await probe(srv.ws_url("/ws"))
    result = await again.request("join", room="chat", since={"seq": last, "epoch": epoch})
    assert result["recovered"] is True
    assert [e["seq"] for e in result["events"]] == list(range(last + 1, sent + 1))
    assert [e["data"]["i"] for e in result["events"]] == list(range(last + 1, sent + 1))
    await dialogue.trigger("chat", "tick", {"i": sent + 1})
    assert (await again.next("event"))["seq"] == sent + 1


async def test_recovery_covers_the_window_up_to_max_recovery(serve, probe):
    dialogue = chat(recovery_window=5000, max_recovery=2000)
    srv = await serve(dialogue)
    first = await probe(srv.ws_url("/ws"))
    epoch = (await first.request("join", room="chat"))["position"]["epoch"]
    await first.close()
    for i in range(1, 1501):
        await dialogue.trigger("chat", "tick", {"i": i})
    again = await probe(srv.ws_url("/ws"))
    result = await again.request("join", room="chat", since={"seq": 0, "epoch": epoch})
    assert result["recovered"] is True
    assert [e["seq"] for e in result["events"]] == list(range(1, 1501))


async def test_a_gap_above_max_recovery_is_not_recovered(serve, probe):
    dialogue = chat(recovery_window=5000, max_recovery=100)
    srv = await serve(dialogue)
    first = await probe(srv.ws_url("/ws"))
    epoch = (await first.request("join", room="chat"))["position"]["epoch"]
    await first.close()
    for i in range(1, 102):
        await dialogue.trigger("chat", "tick", {"i": i})
    again = await probe(srv.ws_url("/ws"))
    result = await again.request("join", room="chat", since={"seq": 0, "epoch": epoch})
    assert result["recovered"] is False and result["events"] == []
    assert result["position"]["seq"] == 101


async def test_slow_consumer_queue_byte_bound_also_closes_4009(serve, probe):
    dialogue = chat(send_queue_max_bytes=64 * 1024)
    srv = await serve(dialogue)
    stalled, hello = await open_stalled_reader(srv.ws_url("/ws"))
    conn = dialogue.runtime.hub.connections[hello["client_id"]]
    try:
        await raw_request(stalled, "join", 1, room="chat")
        fast = await probe(srv.ws_url("/ws"))
        await fast.request("join", room="chat")
        for i in range(1, BURST + 1):
            await dialogue.trigger("chat", "tick", {"i": i, "pad": PAD})
            await asyncio.sleep(0)
        assert [e["seq"] for e in await fast.events(BURST, timeout=2.5)] == list(range(1, BURST + 1))
        frames = await read_until_closed(stalled, timeout=3)
        assert_closed_as_slow(stalled, frames, conn)
    finally:
        stalled.transport.abort()


async def test_overflowed_connection_leaves_presence_without_the_client_reading(serve, probe):
    dialogue = chat(send_queue_max_messages=20, shutdown_grace=0.3)
    srv = await serve(dialogue)
    stalled, hello = await open_stalled_reader(srv.ws_url("/ws"))
    try:
        await raw_request(stalled, "join", 1, room="chat")
        fast = await probe(srv.ws_url("/ws"))
        await fast.request("join", room="chat")
        for i in range(1, BURST + 1):
            await dialogue.trigger("chat", "tick", {"i": i, "pad": PAD})
            await asyncio.sleep(0)
        await fast.events(BURST, timeout=2.5)

        async def present() -> set[str]:
            return {entry.client_id for entry in await dialogue.presence("chat")}

        deadline = time.monotonic() + 1.5
        while hello["client_id"] in await present() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await present() == {fast.hello["client_id"]}
    finally:
        stalled.transport.abort()


async def test_trigger_burst_does_not_disconnect_a_fast_reader(serve, probe):
    dialogue = chat(send_queue_max_messages=20)
    srv = await serve(dialogue)
    fast = await probe(srv.ws_url("/ws"))
    await fast.request("join", room="chat")
    for i in range(1, 101):  # e.g. an application loop notifying a room
        await dialogue.trigger("chat", "tick", {"i": i})
    frames = await drain_frames(fast, wait=0.3)
    assert [f for f in frames if f.get("op") == "disconnect"] == []
    assert [f["seq"] for f in frames if f.get("op") == "event"] == list(range(1, 101))


# --- heartbeat -------------------------------------------------------------------------

async def test_hello_advertises_heartbeat(serve, probe):
    srv = await serve(chat(heartbeat=0.3))
    p = await probe(srv.ws_url("/ws"))
    assert p.hello["heartbeat"] == 0.3


async def test_silent_client_is_closed_4002(serve, probe):
    srv = await serve(chat(heartbeat=0.3))
    started = time.monotonic()
    p = await probe(srv.ws_url("/ws"))
    code, reason = await p.closed(timeout=2)
    elapsed = time.monotonic() - started
    assert code == 4002
    assert "ping" in reason
    assert 0.7 <= elapsed <= 1.8, elapsed  # idle timeout is 3 x 0.3 s
    disconnect = await p.next("disconnect", timeout=0.5)
    assert disconnect["code"] == 4002 and disconnect["reconnect"] is True


async def test_client_sending_ping_stays_connected(serve, probe):
    dialogue = chat(heartbeat=0.3)
    srv = await serve(dialogue)
    pinger = await probe(srv.ws_url("/ws"))
    silent = await probe(srv.ws_url("/ws"))
    await pinger.request("join", room="chat")
    deadline = time.monotonic() + 1.6
    while time.monotonic() < deadline:
        assert await pinger.request("ping", timeout=1) == {}
        await asyncio.sleep(0.2)
    assert (await silent.closed(timeout=0.5))[0] == 4002
    await dialogue.trigger("chat", "tick", {"i": 1})
    assert (await pinger.next("event"))["data"] == {"i": 1}


async def test_heartbeat_timeout_setting_overrides_three_beats(serve, probe):
    srv = await serve(chat(heartbeat=5, heartbeat_timeout=0.4))
    started = time.monotonic()
    p = await probe(srv.ws_url("/ws"))
    assert (await p.closed(timeout=2))[0] == 4002
    assert time.monotonic() - started < 1.2


async def test_heartbeat_zero_turns_the_idle_check_off(serve, probe):
    srv = await serve(chat(heartbeat=0))
    p = await probe(srv.ws_url("/ws"))
    assert p.hello["heartbeat"] == 0
    await asyncio.sleep(0.5)
    assert await p.request("ping") == {}


# --- graceful shutdown -------------------------------------------------------------------

async def test_server_stop_closes_clients_for_reconnect_and_runs_hooks(serve, probe):
    gone: list[str] = []
    left: list[str] = []
    hooks = Hooks(on_disconnected=lambda identity, client_id: gone.append(client_id),
                  on_left=lambda identity, room_id: left.append(room_id))
    dialogue = chat(hooks=hooks, shutdown_grace=1)
    srv = await serve(dialogue)
    clients = [await probe(srv.ws_url("/ws")) for _ in range(3)]
    for p in clients:
        await p.request("join", room="chat")
    started = time.monotonic()
    await srv.stop()
    assert time.monotonic() - started < 2.5
    for p in clients:
        code, _ = await p.closed(timeout=1)
        assert code in (1001, 1012), code
        with contextlib.suppress(TimeoutError):
            disconnect = await p.next("disconnect", timeout=0.05)
            assert disconnect["reconnect"] is True and disconnect["code"] == 1001
    assert sorted(gone) == sorted(p.hello["client_id"] for p in clients)
    assert left == ["chat"] * 3
    assert not dialogue.runtime.started


async def test_dialogue_stop_sends_disconnect_1001_then_closes(serve, probe):
    gone: list[str] = []
    dialogue = chat(hooks=Hooks(on_disconnected=lambda identity, cid: gone.append(cid)),
                    shutdown_grace=1)
    srv = await serve(dialogue)
    a = await probe(srv.ws_url("/ws"))
    b = await probe(srv.ws_url("/ws"))
    await a.request("join", room="chat")
    await dialogue.stop()
    for p in (a, b):
        disconnect = await p.next("disconnect", timeout=1)
        assert disconnect == {"op": "disconnect", "code": 1001, "reason": disconnect["reason"],
                              "reconnect": True}
        assert (await p.closed(timeout=1))[0] == 1001
    assert sorted(gone) == sorted([a.hello["client_id"], b.hello["client_id"]])
    assert await dialogue.presence("chat") == []
    # while stopped, new connections are told to come back later
    late = await probe(srv.ws_url("/ws"), hello=False)
    assert (await late.closed(timeout=1))[0] == 1001
    assert late.frames.empty()


# --- configuration --------------------------------------------------------------------

TOML = """
broker = "memory://"
allow_anonymous = true
max_message_size = 2048
allowed_origins = ["https://app.example.com"]

[rooms.chat]
name = "Chat"
description = "from a file"
events = ["message", "typing"]
default_subscriptions = ["message"]
max_size = 5
sync_history_on_join = 10

[rooms.lobby]
name = "Lobby"
"""


def write(tmp_path: Path, text: str, name: str = "dialogue.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def test_from_file_loads_rooms_with_named_events(tmp_path, serve, probe):
    dialogue = Dialogue.from_file(write(tmp_path, TOML), events=[message, typing])
    room = dialogue.room("chat").config
    assert room.events[0] is message and room.events[1] is typing
    assert (room.description, room.max_size, room.sync_history_on_join) == ("from a file", 5, 10)
    assert dialogue.room("lobby").config.events == []
    assert dialogue.config.max_message_size == 2048
    assert dialogue.config.allowed_origins == ["https://app.example.com"]
    srv = await serve(dialogue)
    p = await probe(srv.ws_url("/ws"), origin="https://app.example.com")
    joined = await p.request("join", room="chat")
    assert joined["subscriptions"] == ["message"] and joined["room"]["max_size"] == 5
    with pytest.raises(ProbeError) as info:
        await p.request("publish", room="chat", event="message", data={"text": 1})
    assert info.value.code == "VALIDATION_FAILED"
    with pytest.raises(ProbeError) as other:
        await p.request("publish", room="chat", event="shout", data={})
    assert other.value.code == "EVENT_NOT_ALLOWED"


async def test_from_file_accepts_a_dialogue_table_and_code_settings(tmp_path, serve, probe):
    text = '[dialogue]\nmax_message_size = 4096\n\n[dialogue.rooms.chat]\nname = "Chat"\n'
    joined: list[str] = []
    dialogue = Dialogue.from_file(
        write(tmp_path, text), authenticate=lambda conn: "file-user",
        hooks=Hooks(on_joined=lambda identity, room: joined.append(identity.user_id)),
    )
    assert dialogue.config.max_message_size == 4096
    srv = await serve(dialogue)
    p = await probe(srv.ws_url("/ws"))
    assert p.hello["user_id"] == "file-user"
    await p.request("join", room="chat")
    await wait_until(lambda: joined == ["file-user"])


def test_from_file_with_undefined_event_names_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="typing"):
        Dialogue.from_file(write(tmp_path, TOML), events=[message])


def test_from_file_with_unknown_room_key_is_a_validation_error(tmp_path):
    text = '[rooms.chat]\nname = "Chat"\nmax_sise = 3\n'
    with pytest.raises(ValidationError, match="max_sise"):
        Dialogue.from_file(write(tmp_path, text))


def test_env_broker_url_wins_over_code(monkeypatch):
    monkeypatch.setenv("DIALOGUE_BROKER_URL", "memory://")
    # in code a Redis URL (not available in this build): the env value is the one used
    dialogue = Dialogue(broker="redis://127.0.0.1:6379/0", allow_anonymous=True)
    assert dialogue.config.broker == "memory://"
    monkeypatch.setenv("DIALOGUE_BROKER_URL", "nats://nowhere")
    with pytest.raises(ValueError, match="nats://nowhere"):
        Dialogue(broker="memory://")


async def test_env_max_message_size_wins_over_code(monkeypatch, serve, probe):
    monkeypatch.setenv("DIALOGUE_MAX_MESSAGE_SIZE", "1024")
    dialogue = chat(max_message_size=1_000_000)
    assert dialogue.config.max_message_size == 1024
    srv = await serve(dialogue)
    p = await probe(srv.ws_url("/ws"))
    await p.send_raw(dumps({"op": "ping", "pad": "x" * 2000}))
    assert (await p.next("error"))["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_env_allowed_origins_wins_over_code(monkeypatch, serve, probe):
    monkeypatch.setenv("DIALOGUE_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    dialogue = chat(allowed_origins=["https://code.example"])
    assert dialogue.config.allowed_origins == ["https://a.example", "https://b.example"]
    srv = await serve(dialogue)
    ok = await probe(srv.ws_url("/ws"), origin="https://b.example")
    assert ok.hello["op"] == "hello"
    refused = await probe(srv.ws_url("/ws"), hello=False, origin="https://code.example")
    assert (await refused.closed(timeout=2))[0] == 1008


def test_env_wins_over_file_and_config_object(monkeypatch, tmp_path):
    monkeypatch.setenv("DIALOGUE_MAX_MESSAGE_SIZE", "3000")
    monkeypatch.setenv("DIALOGUE_ALLOW_ANONYMOUS", "false")
    monkeypatch.setenv("DIALOGUE_HEARTBEAT", "2.5")
    from_file = Dialogue.from_file(write(tmp_path, TOML), events=[message, typing])
    from_object = Dialogue(DialogueConfig(max_message_size=9999, allow_anonymous=True))
    for dialogue in (from_file, from_object):
        assert dialogue.config.max_message_size == 3000
        assert dialogue.config.allow_anonymous is False
        assert dialogue.config.heartbeat == 2.5


def test_empty_env_value_is_ignored(monkeypatch):
    monkeypatch.setenv("DIALOGUE_MAX_MESSAGE_SIZE", "")
    assert chat(max_message_size=5000).config.max_message_size == 5000


@pytest.mark.parametrize(
    ("var", "value", "field"),
    [("DIALOGUE_MAX_MESSAGE_SIZE", "lots", "max_message_size"),
     ("DIALOGUE_MAX_MESSAGE_SIZE", "10", "max_message_size"),
     ("DIALOGUE_HEARTBEAT", "-1", "heartbeat"),
     ("DIALOGUE_ALLOW_ANONYMOUS", "maybe", "allow_anonymous"),
     ("DIALOGUE_SEND_QUEUE_MAX_MESSAGES", "0", "send_queue_max_messages")],
)
def test_bad_env_value_is_a_clear_validation_error(monkeypatch, var, value, field):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError) as info:
        Dialogue()
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [(field,)]
    assert errors[0]["input"] == value
    assert field in str(info.value)


@pytest.mark.parametrize(
    "settings",
    [{"max_message_size": "big"}, {"heartbeat": "soon"}, {"rooms": {"bad room!": RoomConfig(name="x")}},
     {"send_queue_max_bytes": 10}, {"no_such_setting": 1}],
)
def test_bad_code_value_is_a_validation_error(settings):
    with pytest.raises(ValidationError):
        Dialogue(**settings)


def test_bad_room_config_is_a_validation_error():
    with pytest.raises(ValidationError, match="max_size"):
        RoomConfig(name="Chat", max_size=0)
    with pytest.raises(ValidationError, match="channels"):
        RoomConfig(name="Chat", channels=["carrier-pigeon"])


async def test_dialogue_accepts_one_config_object(serve, probe):
    config = DialogueConfig(rooms={"chat": RoomConfig(name="Chat", events=[message])},
                            allow_anonymous=True, max_message_size=4096)
    dialogue = Dialogue(config)
    assert dialogue.config.max_message_size == 4096
    srv = await serve(dialogue)
    a = await probe(srv.ws_url("/ws"))
    b = await probe(srv.ws_url("/ws"))
    await a.request("join", room="chat")
    await b.request("join", room="chat")
    await a.request("publish", room="chat", event="message", data={"text": "configured"})
    assert (await b.next("event"))["data"] == {"text": "configured"}


def test_keyword_settings_override_the_config_object():
    config = DialogueConfig(allow_anonymous=False, max_message_size=4096)
    dialogue = Dialogue(config, allow_anonymous=True)
    assert dialogue.config.allow_anonymous is True
    assert dialogue.config.max_message_size == 4096
    assert config.allow_anonymous is False  # the object passed in is not changed
