"""OpenTelemetry traces on a real server: the span tree of a publish (publish -> broker ->
deliver, one deliver per event per node), its attributes, the correlation id shared with
``log_events``' line, refusals with their code, the traceparent across two Redis nodes,
and no opentelemetry import at all when tracing is off."""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from helpers import authenticate
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id
from pydantic import BaseModel
from redis_helpers import REDIS_URL, delete_prefix, need_redis

from dialogue_fastapi import Dialogue, EventMessage, RateLimit, RoomConfig, define_event
from dialogue_fastapi.core.config import TracingConfig
from dialogue_fastapi.middleware import content_filter, log_events
from dialogue_fastapi.testing import ProbeError, WsProbe

pytestmark = pytest.mark.timeout(30)


class Message(BaseModel):
    text: str


message = define_event("message", schema=Message)


class Spans:
    """A TracerProvider of this test only, exporting to memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def config(self) -> TracingConfig:
        return TracingConfig(tracer_provider=self.provider)

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def children(self, parent: ReadableSpan, name: str) -> list[ReadableSpan]:
        assert parent.context is not None
        return [s for s in self.named(name)
                if s.parent is not None and s.parent.span_id == parent.context.span_id
                and s.context is not None and s.context.trace_id == parent.context.trace_id]


@pytest.fixture
def spans() -> Iterator[Spans]:
    recorder = Spans()
    yield recorder
    recorder.provider.shutdown()


async def joined(url: str, user: str, room: str = "chat") -> WsProbe:
    probe = await WsProbe.open(f"{url}?token={user}")
    await probe.request("join", room=room)
    return probe


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_websocket_publish_makes_one_span_tree_joined_to_the_log_line(
    serve, spans: Spans, caplog: pytest.LogCaptureFixture
) -> None:
    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=authenticate,
                        middleware=[log_events()], tracing=spans.config())
    srv = await serve(dialogue)
    caplog.set_level(logging.INFO, logger="dialogue_fastapi.events")
    alice, bob, carol = [await joined(srv.ws_url(), u) for u in ("alice", "bob", "carol")]
    try:
        for n in range(3):
            ack = await alice.request("publish", room="chat", event="m", data={"n": n})
            assert ack["seq"] == n + 1
        received = [len(await p.events(3)) for p in (alice, bob, carol)]
    finally:
        for p in (alice, bob, carol):
            await p.close()

    publishes = spans.named("dialogue.publish")
    assert len(publishes) == 3
    first = min(publishes, key=lambda s: attrs(s)["dialogue.seq"])
    assert first.parent is None and first.status.status_code is StatusCode.UNSET
    record = next(r for r in caplog.records if r.name == "dialogue_fastapi.events"
                  and r.dialogue["seq"] == 1)  # type: ignore[attr-defined]
    fields = record.dialogue  # type: ignore[attr-defined]
    assert first.context is not None
    assert attrs(first) == {
        "dialogue.room": "chat", "dialogue.event": "m", "dialogue.transport": "websocket",
        "dialogue.user_id": "alice", "dialogue.client_id": fields["client_id"],
        "dialogue.correlation_id": fields["correlation_id"], "dialogue.seq": 1,
    }
    # the log line names the publish span
    assert fields["trace_id"] == format_trace_id(first.context.trace_id)
    assert fields["span_id"] == format_span_id(first.context.span_id)
    assert f"trace_id={fields['trace_id']}" in record.getMessage()

    (broker,) = spans.children(first, "dialogue.broker.publish")
    assert attrs(broker) == {"dialogue.room": "chat", "dialogue.event": "m", "dialogue.seq": 1}
    (deliver,) = spans.children(broker, "dialogue.deliver")
    assert attrs(deliver) == {"dialogue.room": "chat", "dialogue.event": "m", "dialogue.seq": 1,
                              "dialogue.recipients": sum(received) // 3}
    assert sum(received) // 3 >= 2  # bob and carol (and alice, if she gets her own events)
    # one deliver span per event on this node, never one per recipient
    assert len(spans.named("dialogue.deliver")) == 3
    assert len(spans.named("dialogue.broker.publish")) == 3


async def test_refused_publishes_have_an_error_status_with_their_code(
    serve, spans: Spans, caplog: pytest.LogCaptureFixture
) -> None:
    dialogue = Dialogue(
        rooms={"chat": RoomConfig(name="Chat", events=[message])}, authenticate=authenticate,
        middleware=[log_events(), content_filter(["darn"])],
        rate_limit=RateLimit(rooms={"chat": "2/minute"}), tracing=spans.config())
    srv = await serve(dialogue)
    caplog.set_level(logging.INFO, logger="dialogue_fastapi.events")
    alice = await joined(srv.ws_url(), "alice")
    codes = []
    try:
        for data in ({"text": "hi"}, {"text": 5}, {"text": "darn"}, {"text": "again"}):
            try:
                await alice.request("publish", room="chat", event="message", data=data)
                codes.append("ok")
            except ProbeError as exc:
                codes.append(exc.code)
    finally:
        await alice.close()
    # invalid data is refused before the limit; the blocked publish spent its budget
    assert codes == ["ok", "VALIDATION_FAILED", "BLOCKED", "RATE_LIMITED"]

    ordered = sorted(spans.named("dialogue.publish"), key=lambda s: s.start_time or 0)
    assert [attrs(s).get("dialogue.error.code") for s in ordered] == [
        None, "VALIDATION_FAILED", "BLOCKED", "RATE_LIMITED"]
    for span, code in zip(ordered[1:], codes[1:], strict=True):
        assert span.status.status_code is StatusCode.ERROR
        assert (span.status.description or "").startswith(f"{code}: ")
        assert not spans.children(span, "dialogue.broker.publish")  # never reached the broker
        assert "dialogue.seq" not in attrs(span)
    # the middleware's refusal carries log_events' correlation id, as its log line does
    blocked = ordered[2]
    line = next(r for r in caplog.records if r.name == "dialogue_fastapi.events"
                and r.dialogue["outcome"] == "BLOCKED")  # type: ignore[attr-defined]
    assert attrs(blocked)["dialogue.correlation_id"] == line.dialogue["correlation_id"]  # type: ignore[attr-defined]
    assert len(spans.named("dialogue.broker.publish")) == 1


async def test_server_trigger_and_dropped_event(spans: Spans) -> None:
    def drop_noise(msg: EventMessage) -> EventMessage | None:
        return None if msg.event == "noise" else msg

    from dialogue_fastapi.middleware import transform

    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, allow_anonymous=True,
                        middleware=[transform(drop_noise)], tracing=spans.config())
    await dialogue.start()
    try:
        published = await dialogue.trigger("chat", "news", {"x": 1})
        await dialogue.trigger("chat", "noise", {})
    finally:
        await dialogue.stop()
    news, noise = sorted(spans.named("dialogue.publish"), key=lambda s: s.start_time or 0)
    assert attrs(news)["dialogue.transport"] == "server"
    assert "dialogue.user_id" not in attrs(news) and attrs(news)["dialogue.seq"] == published.seq
    assert attrs(noise)["dialogue.dropped"] is True
    assert not spans.children(noise, "dialogue.broker.publish")
    assert published.traceparent is not None  # the broker span's context, carried in the message
    assert "traceparent" not in published.to_wire()  # never sent to clients


def instrumented(dialogue: Dialogue, provider: TracerProvider) -> Any:
    """An app whose requests and connections get a SERVER span on ``provider``: FastAPI's
    native telemetry where FastAPI has it, else what an ASGI instrumentation does."""
    if "telemetry" in inspect.signature(FastAPI).parameters:
        app = FastAPI(telemetry={"tracer_provider": provider})
        app.include_router(dialogue.router)
        return app
    app = FastAPI()
    app.include_router(dialogue.router)
    tracer = provider.get_tracer("asgi")

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await app(scope, receive, send)
        name = "WS" if scope["type"] == "websocket" else scope["method"]
        with tracer.start_as_current_span(f"{name} {scope['path']}", kind=SpanKind.SERVER):
            await app(scope, receive, send)

    return asgi


async def test_a_websocket_publish_is_its_own_trace_linked_to_the_connection(
    serve, spans: Spans
) -> None:
    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=authenticate,
                        tracing=spans.config())
    srv = await serve(instrumented(dialogue, spans.provider))
    alice = await joined(srv.ws_url(), "alice")
    try:
        await alice.request("publish", room="chat", event="m", data={"n": 1})
        async with httpx.AsyncClient() as http:
            posted = await http.post(srv.http_url + "/rooms/chat/events", json={"event": "m"},
                                     headers={"authorization": "Bearer bob"})
        assert posted.status_code == 202
        await alice.events(2)
    finally:
        await alice.close()

    def servers() -> dict[str, ReadableSpan]:
        return {s.name: s for s in spans.exporter.get_finished_spans() if s.kind is SpanKind.SERVER}

    async with asyncio.timeout(5):  # the connection's span ends once the server saw the close
        while "WS /ws" not in servers():
            await asyncio.sleep(0.01)
    ws, post = servers()["WS /ws"], next(v for k, v in servers().items() if k.startswith("POST"))
    assert ws.context is not None and post.context is not None
    by_ws, by_rest = sorted(spans.named("dialogue.publish"), key=lambda s: s.start_time or 0)
    assert attrs(by_ws)["dialogue.transport"] == "websocket"
    assert by_ws.parent is None and by_ws.context is not None
    assert by_ws.context.trace_id != ws.context.trace_id
    assert [link.context.trace_id for link in by_ws.links] == [ws.context.trace_id]
    assert attrs(by_rest)["dialogue.transport"] == "rest"
    assert by_rest.parent is not None and by_rest.context is not None
    assert by_rest.context.trace_id == post.context.trace_id  # inside the request's trace
    assert not by_rest.links


def test_the_broker_message_carries_the_traceparent_as_a_field_others_ignore() -> None:
    tp = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    record = EventMessage("chat", "m", {"a": 1}, "u", 5, 3, traceparent=tp).to_record()
    assert record["traceparent"] == tp and "traceparent" not in EventMessage("chat", "m", 1).to_record()
    # a node reads only the fields it knows: one from a later version adds more
    back = EventMessage.from_wire({**record, "a_later_field": {"x": 1}})
    assert (back.traceparent, back.seq, back.data) == (tp, 3, {"a": 1})


async def test_the_deliver_span_on_another_redis_node_joins_the_publish_trace(serve) -> None:
    await need_redis()
    prefix = f"dtest{secrets.token_hex(4)}:"
    url = f"{REDIS_URL}?prefix={prefix}"
    node_a, node_b = Spans(), Spans()  # two processes, each with its own provider
    try:
        srv_a = await serve(Dialogue(rooms={"chat": RoomConfig(name="Chat")}, broker=url,
                                     authenticate=authenticate, tracing=node_a.config()))
        srv_b = await serve(Dialogue(rooms={"chat": RoomConfig(name="Chat")}, broker=url,
                                     authenticate=authenticate, tracing=node_b.config()))
        alice, carol = await joined(srv_a.ws_url(), "alice"), await joined(srv_a.ws_url(), "carol")
        bob = await joined(srv_b.ws_url(), "bob")
        try:
            ack = await alice.request("publish", room="chat", event="m", data={"n": 1})
            (got,) = await bob.events(1)
            await carol.events(1)  # node A delivered it too (through its own subscriber)
        finally:
            for probe in (alice, carol, bob):
                await probe.close()
        assert got["seq"] == ack["seq"] and "traceparent" not in got
        (publish,) = node_a.named("dialogue.publish")
        (broker,) = node_a.children(publish, "dialogue.broker.publish")
        (remote,) = node_b.named("dialogue.deliver")
        assert remote.parent is not None and remote.parent.is_remote
        assert remote.context is not None and broker.context is not None
        assert (remote.context.trace_id, remote.parent.span_id) == (
            broker.context.trace_id, broker.context.span_id)
        assert attrs(remote) == {"dialogue.room": "chat", "dialogue.event": "m",
                                 "dialogue.seq": ack["seq"], "dialogue.recipients": 1}
        # the publishing node delivers through Redis too, into the same trace
        (local,) = node_a.children(broker, "dialogue.deliver")
        assert attrs(local)["dialogue.seq"] == ack["seq"]
        assert not node_b.named("dialogue.publish")
    finally:
        node_a.provider.shutdown()
        node_b.provider.shutdown()
        await delete_prefix(prefix)


NO_OTEL = textwrap.dedent("""
    import asyncio, sys
    import fastapi, uvicorn, websockets  # what any app loads (FastAPI may load opentelemetry)

    def otel():
        return {m for m in sys.modules if m.split(".")[0] == "opentelemetry"}

    before = otel()
    from fastapi import FastAPI
    from dialogue_fastapi import Dialogue, RoomConfig
    from dialogue_fastapi.logs import install_json_logs
    from dialogue_fastapi.middleware import log_events
    from dialogue_fastapi.testing import WsProbe, live_server

    async def main():
        install_json_logs()
        dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, allow_anonymous=True,
                            middleware=[log_events()])
        app = FastAPI()
        app.include_router(dialogue.router)
        async with live_server(app) as srv:
            probe = await WsProbe.open(srv.ws_url())
            await probe.request("join", room="chat")
            await probe.request("publish", room="chat", event="m", data={"x": 1})
            assert (await probe.events(1))[0]["seq"] == 1
            await probe.close()
        await dialogue.trigger("chat", "m", {"x": 2})
        ours = sorted(m for m in sys.modules if m.startswith("dialogue_fastapi.tracing"))
        print("off", sorted(otel() - before), ours)
        Dialogue(rooms={"chat": RoomConfig(name="Chat")}, allow_anonymous=True, tracing=True)
        print("on", "dialogue_fastapi.tracing.otel" in sys.modules, "opentelemetry.trace" in sys.modules)

    asyncio.run(main())
""")


def test_without_tracing_opentelemetry_is_never_imported(tmp_path: Path) -> None:
    """FastAPI itself may import opentelemetry (its native telemetry); the library adds none."""
    script = tmp_path / "no_otel.py"
    script.write_text(NO_OTEL)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == ["off [] ['dialogue_fastapi.tracing']", "on True True"], done.stdout + done.stderr


def test_only_the_tracing_package_imports_opentelemetry() -> None:
    package = Path(__file__).resolve().parents[1] / "dialogue_fastapi"
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n.split(".")[0] == "opentelemetry" for n in names):
                importers.add(path.relative_to(package).as_posix())
    assert importers == {"tracing/otel.py"}


def test_without_the_extra_tracing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "dialogue_fastapi.tracing.otel", raising=False)
    with pytest.raises(ImportError, match=r'pip install "dialogue-fastapi\[otel\]"'):
        Dialogue(rooms={"chat": RoomConfig(name="Chat")}, allow_anonymous=True, tracing=True)
    from dialogue_fastapi.logs import JsonFormatter

    with pytest.raises(ImportError, match=r'pip install "dialogue-fastapi\[otel\]"'):
        JsonFormatter(trace_ids=True)
    Dialogue(rooms={"chat": RoomConfig(name="Chat")}, allow_anonymous=True)  # off: no import


async def test_an_unsampled_publish_records_nothing_on_any_node(serve) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    exporter, provider = InMemorySpanExporter(), TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=authenticate,
                        tracing=TracingConfig(tracer_provider=provider))
    srv = await serve(dialogue)
    bob = await joined(srv.ws_url(), "bob")
    try:
        published = await dialogue.trigger("chat", "m", {"n": 1})
        assert (await bob.events(1))[0]["seq"] == published.seq
    finally:
        await bob.close()
        provider.shutdown()
    assert published.traceparent is not None
    assert int(published.traceparent[-2:], 16) & 1 == 0  # carried, with "not sampled"
    assert exporter.get_finished_spans() == ()  # the deliver span followed the decision
