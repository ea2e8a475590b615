"""Structured JSON logs: one object per line with the library's fields (connection, user,
room, seq, correlation id, trace and span ids), and never a credential."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from helpers import authenticate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id, format_trace_id

from dialogue_fastapi import Dialogue, RoomConfig
from dialogue_fastapi.core.config import TracingConfig
from dialogue_fastapi.logs import JsonFormatter, install_json_logs, scrub
from dialogue_fastapi.middleware import log_events
from dialogue_fastapi.testing import WsProbe

SECRETS = [f"s3cr3t{n}x" for n in range(9)]
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


@pytest.fixture
def dialogue_logger() -> Iterator[logging.Logger]:
    """The library's logger, restored after the test."""
    logger = logging.getLogger("dialogue_fastapi")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved


def record(name: str, msg: str, args: Any = (), *, extra: dict[str, Any] | None = None,
           exc_info: Any = None) -> logging.LogRecord:
    return logging.getLogger(name).makeRecord(name, logging.WARNING, __file__, 10, msg, args,
                                              exc_info, extra=extra)


def test_a_record_is_one_json_object_with_its_fields() -> None:
    line = JsonFormatter().format(record(
        "dialogue_fastapi", "room %s: events %d..%d left the window", ("chat", 4, 9),
        extra={"client_id": "c_1", "user_id": "alice", "room": "chat", "seq": 4,
               "correlation_id": "err_abc", "payload": {"n": [1, 2]}}))
    assert "\n" not in line
    out = orjson.loads(line)
    assert out["ts"].endswith("Z") and out["level"] == "WARNING" and out["logger"] == "dialogue_fastapi"
    assert out["message"] == "room chat: events 4..9 left the window"
    assert {k: out[k] for k in ("client_id", "user_id", "room", "seq", "correlation_id", "payload")} == {
        "client_id": "c_1", "user_id": "alice", "room": "chat", "seq": 4,
        "correlation_id": "err_abc", "payload": {"n": [1, 2]}}
    assert "args" not in out and "msg" not in out and "exc_info" not in out


def test_no_credential_reaches_the_json() -> None:
    try:
        raise ValueError(f"refused password={SECRETS[0]}")
    except ValueError:
        import sys

        failure = sys.exc_info()
    rec = record(
        "dialogue_fastapi",
        "authenticate failed for token=%s (Authorization: Bearer %s) %s at %s",
        (SECRETS[1], SECRETS[2], JWT, f"/ws?room=chat&token={SECRETS[3]}&ticket={SECRETS[4]}"),
        extra={"token": SECRETS[5], "url": f"wss://h/ws?access_token={SECRETS[6]}&room=chat",
               "headers": {"authorization": f"Bearer {SECRETS[7]}", "accept": "text/plain"},
               "items": [f"api_key: {SECRETS[8]}"], "room": "chat"},
        exc_info=failure)
    line = JsonFormatter().format(rec)
    for secret in [*SECRETS, JWT, "eyJhbGci"]:
        assert secret not in line, (secret, line)
    out = orjson.loads(line)
    # what is not a credential stays readable
    assert out["message"] == ("authenticate failed for token=*** (Authorization: Bearer ***) *** "
                              "at /ws?room=chat&token=***&ticket=***")
    assert out["token"] == "***" and out["headers"] == {"authorization": "***", "accept": "text/plain"}
    assert out["url"] == "wss://h/ws?access_token=***&room=chat" and out["room"] == "chat"
    assert "ValueError: refused password=***" in out["exc_info"]


def test_uvicorn_handshake_lines_show_no_token() -> None:
    line = JsonFormatter().format(record("uvicorn.error", '%s - "WebSocket %s" %d',
                                         ("1.2.3.4:5", f"/ws?token={SECRETS[0]}", 403)))
    assert orjson.loads(line)["message"] == '1.2.3.4:5 - "WebSocket /ws?token=***" 403'


def test_scrub_leaves_ordinary_text_alone() -> None:
    text = "event correlation_id=err_1 room=chat sender=alice outcome=RATE_LIMITED seq=3 code=4009"
    assert scrub(text) == text


async def test_log_events_lines_carry_the_connection_user_seq_correlation_and_trace(
    serve, dialogue_logger: logging.Logger
) -> None:
    stream = io.StringIO()
    handler = install_json_logs(stream=stream)
    install_json_logs(stream=stream)  # again: replaces its handler, never adds a second
    assert handler not in dialogue_logger.handlers
    assert len([h for h in dialogue_logger.handlers if isinstance(h.formatter, JsonFormatter)]) == 1
    assert dialogue_logger.level == logging.INFO and dialogue_logger.propagate is False

    exporter, provider = InMemorySpanExporter(), TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=authenticate,
                        middleware=[log_events()],
                        tracing=TracingConfig(tracer_provider=provider))
    srv = await serve(dialogue)
    alice = await WsProbe.open(srv.ws_url() + "?token=alice")
    try:
        await alice.request("join", room="chat")
        await alice.request("publish", room="chat", event="m", data={"text": "hi"})
    finally:
        await alice.close()
        provider.shutdown()
    lines = [orjson.loads(raw) for raw in stream.getvalue().splitlines()]
    (line,) = [x for x in lines if x["logger"] == "dialogue_fastapi.events"]
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "dialogue.publish"]
    assert span.context is not None
    assert line["client_id"].startswith("c_") and line["user_id"] == "alice"
    assert (line["room"], line["event"], line["seq"], line["outcome"]) == ("chat", "m", 1, "published")
    assert line["correlation_id"] == (span.attributes or {})["dialogue.correlation_id"]
    assert line["trace_id"] == format_trace_id(span.context.trace_id)
    assert line["span_id"] == format_span_id(span.context.span_id)


def test_trace_ids_of_the_active_span_are_added_on_request() -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    formatter, plain = JsonFormatter(trace_ids=True), JsonFormatter()
    outside = orjson.loads(formatter.format(record("x", "outside")))
    assert "trace_id" not in outside
    with tracer.start_as_current_span("work") as span:
        inside = orjson.loads(formatter.format(record("x", "inside")))
        assert "trace_id" not in orjson.loads(plain.format(record("x", "inside")))
    context = span.get_span_context()
    assert (inside["trace_id"], inside["span_id"]) == (
        format_trace_id(context.trace_id), format_span_id(context.span_id))
    provider.shutdown()
