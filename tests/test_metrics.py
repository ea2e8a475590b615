"""Prometheus metrics of one process: exact values after scripted traffic on a real server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import httpx
import pytest
from metrics_helpers import scrape, total, value
from net_helpers import open_stalled_reader, raw_request

from dialogue_fastapi import Dialogue, MetricsConfig, RateLimit, RoomConfig

PAD = "x" * 8000


def chat(**settings: Any) -> Dialogue:
    settings.setdefault("allow_anonymous", True)
    settings.setdefault("metrics", True)
    return Dialogue(rooms={"chat": RoomConfig(name="Chat")}, **settings)


async def test_connections_events_and_room_sizes_are_exact(serve, probe):
    srv = await serve(chat())
    clients = [await probe(srv.ws_url("/ws")) for _ in range(3)]
    for client in clients:
        await client.request("join", room="chat")
    for i in range(10):
        await clients[0].request("publish", room="chat", event="message", data={"i": i})
    for client in clients:
        await client.events(10)
    samples = await scrape(srv.http_url + "/metrics")
    assert value(samples, "dialogue_connections_active") == 3
    assert value(samples, "dialogue_connections_total") == 3
    assert value(samples, "dialogue_connections_accepted_total", transport="websocket") == 3
    assert value(samples, "dialogue_events_total", room="chat", event="message") == 10
    assert value(samples, "dialogue_events_latency_seconds_count", room="chat", event="message") == 10
    assert value(samples, "dialogue_broker_publish_duration_seconds_count") == 10
    assert value(samples, "dialogue_rooms_size", room="chat") == 3
    assert value(samples, "dialogue_messages_delivered_total", transport="websocket") == 30
    assert value(samples, "dialogue_commands_total", op="publish", code="ok") == 10
    assert value(samples, "dialogue_commands_total", op="join", code="ok") == 3
    assert value(samples, "dialogue_command_duration_seconds_count", op="publish") == 10
    await clients[2].close()
    await clients[1].request("leave", room="chat")
    samples = await scrape(srv.http_url + "/metrics")
    assert value(samples, "dialogue_connections_active") == 2
    assert value(samples, "dialogue_rooms_size", room="chat") == 1
    assert value(samples, "dialogue_connections_closed_total", transport="websocket", code="client") == 1
    # deliveries of a connection that ended still count
    assert value(samples, "dialogue_messages_delivered_total", transport="websocket") == 30


async def test_one_slow_consumer_is_one_drop_with_its_reason(serve, probe):
    dialogue = chat(send_queue_max_messages=64)
    srv = await serve(dialogue)
    stalled, hello = await open_stalled_reader(srv.ws_url("/ws"))
    conn = dialogue.runtime.hub.connections[hello["client_id"]]
    try:
        await raw_request(stalled, "join", 1, room="chat")
        for i in range(3000):
            await dialogue.trigger("chat", "tick", {"i": i, "pad": PAD})
            if conn.closed:
                break
        assert conn.close_code == 4009
        while conn.client_id in dialogue.runtime.hub.connections:  # its session ends
            await asyncio.sleep(0.01)
        samples = await scrape(srv.http_url + "/metrics")
        assert value(samples, "dialogue_slow_consumers_total", transport="websocket",
                     reason="queue_messages") == 1
        assert total(samples, "dialogue_slow_consumers_total") == 1
        dropped = value(samples, "dialogue_messages_dropped_total", transport="websocket",
                        reason="queue_messages")
        assert dropped == conn.dropped and dropped >= 1
        assert value(samples, "dialogue_connections_closed_total", transport="websocket", code="4009") == 1
    finally:
        stalled.transport.abort()


async def test_a_rate_limited_publish_is_one_refusal(serve, probe):
    srv = await serve(chat(rate_limit=RateLimit(default="2/minute")))
    client = await probe(srv.ws_url("/ws"))
    await client.request("join", room="chat")
    for i in range(2):
        await client.request("publish", room="chat", event="message", data={"i": i})
    reply = await client.reply("publish", room="chat", event="message", data={"i": 2})
    assert reply["error"]["code"] == "RATE_LIMITED"
    samples = await scrape(srv.http_url + "/metrics")
    assert value(samples, "dialogue_publish_refusals_total", code="RATE_LIMITED") == 1
    assert total(samples, "dialogue_publish_refusals_total") == 1
    assert value(samples, "dialogue_commands_total", op="publish", code="RATE_LIMITED") == 1
    assert value(samples, "dialogue_events_total", room="chat", event="message") == 2


async def test_refused_connections_count_once_by_transport_and_code(serve, probe):
    from dialogue_fastapi.testing import SseProbe

    def authenticate(token: str | None = None) -> str | None:
        return token

    srv = await serve(chat(allow_anonymous=False, authenticate=authenticate,
                           rate_limit=RateLimit(connections="4/minute")))
    ok = await probe(srv.ws_url("/ws?token=a"))
    assert ok.hello["user_id"] == "a"
    anonymous = await probe(srv.ws_url("/ws"), hello=False)
    assert (await anonymous.closed(timeout=2))[0] == 4001
    foreign = await probe(srv.ws_url("/ws"), hello=False, origin="https://evil.example")
    assert (await foreign.closed(timeout=2))[0] == 1008  # the Origin first: counted once
    sse = await SseProbe.open(srv.http_url + "/sse?room=chat")
    await sse.close()
    assert sse.status == 401
    limited = await probe(srv.ws_url("/ws?token=a"), hello=False)  # the fifth attempt
    assert (await limited.closed(timeout=2))[0] == 4008
    async with httpx.AsyncClient() as http:
        assert (await http.get(srv.http_url + "/rooms")).status_code == 401
    samples = await scrape(srv.http_url + "/metrics")
    assert value(samples, "dialogue_connection_refusals_total", transport="websocket",
                 code="UNAUTHORIZED") == 1
    assert value(samples, "dialogue_connection_refusals_total", transport="websocket",
                 code="FORBIDDEN") == 1
    assert value(samples, "dialogue_connection_refusals_total", transport="websocket",
                 code="RATE_LIMITED") == 1
    assert value(samples, "dialogue_connection_refusals_total", transport="sse",
                 code="UNAUTHORIZED") == 1
    assert value(samples, "dialogue_connection_refusals_total", transport="rest",
                 code="UNAUTHORIZED") == 1
    assert total(samples, "dialogue_connection_refusals_total") == 5
    assert value(samples, "dialogue_connections_accepted_total", transport="websocket") == 1


async def test_recoveries_by_outcome_with_replayed_counts(serve, probe):
    srv = await serve(chat())
    client = await probe(srv.ws_url("/ws"))
    joined = await client.request("join", room="chat")
    for i in range(4):
        await client.request("publish", room="chat", event="message", data={"i": i})
    await client.request("leave", room="chat")
    since = joined["position"]
    assert (await client.request("join", room="chat", since=since))["recovered"] is True
    await client.request("leave", room="chat")
    await client.request("join", room="chat", since={"seq": 1, "epoch": "elsewhere"})
    samples = await scrape(srv.http_url + "/metrics")
    assert value(samples, "dialogue_recoveries_total", transport="websocket", outcome="recovered") == 1
    assert value(samples, "dialogue_recoveries_total", transport="websocket", outcome="failed") == 1
    assert value(samples, "dialogue_recovered_events_total", transport="websocket") == 4


async def test_store_queue_and_batches_and_ready_report(serve):
    dialogue = chat(persistence="memory://")
    srv = await serve(dialogue)
    for i in range(5):
        await dialogue.trigger("chat", "message", {"i": i})
    await dialogue.flush()
    samples = await scrape(srv.http_url + "/metrics")
    assert value(samples, "dialogue_store_written_total") == 5
    assert value(samples, "dialogue_store_queue_depth") == 0
    assert value(samples, "dialogue_store_lag_seconds") == 0
    assert value(samples, "dialogue_store_dead_letters") == 0
    assert (value(samples, "dialogue_store_batch_duration_seconds_count") or 0) >= 1
    async with httpx.AsyncClient() as http:
        ready = (await http.get(srv.http_url + "/ready")).json()
    assert ready == {"status": "ok", "checks": {"started": True, "broker": True, "store": True},
                     "dead_letters": 0, "store": {"pending": 0, "lag_seconds": 0.0}}


async def test_ready_without_store_or_subscriber_keeps_its_fields(serve):
    srv = await serve(chat(metrics=False))
    async with httpx.AsyncClient() as http:
        ready = (await http.get(srv.http_url + "/ready")).json()
    assert ready == {"status": "ok", "checks": {"started": True, "broker": True}, "dead_letters": 0}


async def test_openapi_documents_every_field_of_ready(serve):
    srv = await serve(chat(metrics=False))
    async with httpx.AsyncClient() as http:
        spec = (await http.get(srv.http_url + "/openapi.json")).json()
        health = (await http.get(srv.http_url + "/health")).json()
    schemas = spec["components"]["schemas"]
    assert set(schemas["Health"]["properties"]) == {"status", "checks", "dead_letters", "subscriber",
                                                    "store", "push"}
    assert set(schemas["StoreReport"]["properties"]) == {"pending", "lag_seconds"}
    assert set(schemas["SubscriberReport"]["properties"]) == {"up", "reconnects", "gap_repairs"}
    assert health == {"status": "ok", "checks": {}, "dead_letters": 0}  # no nulls where n/a


async def test_ready_and_metrics_report_the_redis_subscriber(serve):
    from redis_helpers import REDIS_URL, delete_prefix, need_redis

    await need_redis()
    dialogue = chat(broker=f"{REDIS_URL}?prefix=dmetrics:")
    try:
        srv = await serve(dialogue)
        async with httpx.AsyncClient() as http:
            ready = (await http.get(srv.http_url + "/ready")).json()
        assert ready["subscriber"] == {"up": True, "reconnects": 0, "gap_repairs": 0}
        samples = await scrape(srv.http_url + "/metrics")
        assert value(samples, "dialogue_broker_subscriber_up") == 1
        assert value(samples, "dialogue_broker_gap_repairs_total") == 0
    finally:
        await delete_prefix("dmetrics:")


async def test_the_endpoint_path_and_registry_are_configurable(serve):
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    dialogue = chat(metrics=MetricsConfig(endpoint="/internal/prom", registry=registry))
    srv = await serve(dialogue, prefix="/dialogue")
    await dialogue.trigger("chat", "message", {})
    samples = await scrape(srv.http_url + "/dialogue/internal/prom")
    assert value(samples, "dialogue_events_total", room="chat", event="message") == 1
    assert dialogue.metrics is not None and dialogue.metrics.registry is registry
    async with httpx.AsyncClient() as http:
        assert (await http.get(srv.http_url + "/dialogue/metrics")).status_code == 404


async def test_http_route_metrics_are_opt_in_on_our_registry(serve):
    from fastapi import FastAPI

    dialogue = chat()
    app = FastAPI()
    assert dialogue.metrics is not None
    dialogue.metrics.instrument(app)
    app.include_router(dialogue.router)
    srv = await serve(app)
    async with httpx.AsyncClient() as http:
        assert (await http.get(srv.http_url + "/health")).status_code == 200
    samples = await scrape(srv.http_url + "/metrics")
    assert total(samples, "dialogue_http_requests_total", handler="/health") == 1


def test_an_app_without_metrics_never_imports_prometheus_client():
    code = ("import sys; from dialogue_fastapi import Dialogue; d = Dialogue(allow_anonymous=True); "
            "d.router; assert 'prometheus_client' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("on", [True, MetricsConfig(), {"enabled": True, "format": "prometheus",
                                                        "endpoint": "/metrics"}])
def test_the_roadmap_spellings_turn_metrics_on(on: Any) -> None:
    assert Dialogue(allow_anonymous=True, metrics=on).metrics is not None


def test_metrics_off_spellings() -> None:
    assert Dialogue(allow_anonymous=True).metrics is None
    assert Dialogue(allow_anonymous=True, metrics=MetricsConfig(enabled=False)).metrics is None


def test_docs_name_every_metric_and_every_setting() -> None:
    """docs/metrics.md lists each metric the exporter defines and each MetricsConfig field."""
    from pathlib import Path

    from prometheus_client import CollectorRegistry

    from dialogue_fastapi.metrics.families import BrokerFamilies, Families, StoreFamilies

    registry = CollectorRegistry()
    Families(registry, (0.1,))
    BrokerFamilies(registry)
    StoreFamilies(registry)
    text = (Path(__file__).parents[1] / "docs" / "metrics.md").read_text()
    names = {m.name + ("_total" if m.type == "counter" else "") for m in registry.collect()}
    assert names and all(f"`{name}`" in text for name in names), sorted(
        n for n in names if f"`{n}`" not in text)
    missing = [f for f in MetricsConfig.model_fields if f"| `{f}` |" not in text]
    assert not missing, missing


async def test_sse_connections_and_deliveries_count_by_transport(serve):
    from dialogue_fastapi.testing import SseProbe

    dialogue = chat()
    srv = await serve(dialogue)
    stream = await SseProbe.open(srv.http_url + "/sse?room=chat")
    try:
        for i in range(3):
            await dialogue.trigger("chat", "message", {"i": i})
        await stream.events(3)
        samples = await scrape(srv.http_url + "/metrics")
        assert value(samples, "dialogue_connections_accepted_total", transport="sse") == 1
        assert value(samples, "dialogue_messages_delivered_total", transport="sse") == 3
        assert value(samples, "dialogue_rooms_size", room="chat") == 1
    finally:
        await stream.close()
