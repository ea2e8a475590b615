"""Who may read ``/metrics``, and how large it can grow: the label cardinality is bounded."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpx
import pytest
from fastapi import Header, HTTPException
from metrics_helpers import parse, scrape, value
from redis_helpers import IN_CI

from dialogue_fastapi import Dialogue, MetricsConfig, RoomConfig
from dialogue_fastapi.testing import LiveServer

#: documented in docs/metrics.md: the endpoint stays under this size whatever the number of rooms
MAX_SCRAPE_BYTES = 64 * 1024


def outward_address() -> str | None:
    """A non-loopback IPv4 address of this host (None if it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # UDP: no packet is sent
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


def chat(metrics: Any = True) -> Dialogue:
    return Dialogue(rooms={"chat": RoomConfig(name="Chat"), "dm:{a}:{b}": RoomConfig(name="DM")},
                    allow_anonymous=True, metrics=metrics, max_rooms_per_user=0)


async def get(url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(url, **kwargs)


@pytest.fixture
async def outward_server():
    address = outward_address()
    if address is None:
        reason = "this host has no non-loopback address to bind the refused endpoint to"
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    servers: list[LiveServer] = []

    async def start(dialogue: Dialogue) -> LiveServer:
        server = LiveServer(_app(dialogue), address, 0)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def _app(dialogue: Dialogue) -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    app.include_router(dialogue.router)
    return app


async def test_unprotected_metrics_are_refused_on_a_non_loopback_bind(outward_server):
    srv = await outward_server(chat())
    response = await get(srv.http_url + "/metrics")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"


async def test_allow_unprotected_serves_them_anywhere(outward_server):
    srv = await outward_server(chat(MetricsConfig(allow_unprotected=True)))
    assert (await get(srv.http_url + "/metrics")).status_code == 200


async def test_a_request_through_a_proxy_is_not_a_loopback_request(serve):
    srv = await serve(chat())
    assert (await get(srv.http_url + "/metrics")).status_code == 200  # direct, from loopback
    for header in ("X-Forwarded-For", "X-Real-IP", "Forwarded"):
        response = await get(srv.http_url + "/metrics", headers={header: "203.0.113.9"})
        assert response.status_code == 403, header


def admin(x_admin_token: str | None = Header(default=None)) -> None:
    if x_admin_token != "s3cret":
        raise HTTPException(status_code=401, detail="admin only")


async def test_the_admin_dependency_guards_the_endpoint(outward_server):
    srv = await outward_server(chat(MetricsConfig(admin=admin)))
    assert (await get(srv.http_url + "/metrics")).status_code == 401
    response = await get(srv.http_url + "/metrics", headers={"X-Admin-Token": "s3cret"})
    assert response.status_code == 200
    assert "dialogue_connections_active" in response.text


async def test_10000_runtime_rooms_and_10000_instances_keep_the_endpoint_small(serve):
    dialogue = chat()
    srv = await serve(dialogue)
    for i in range(10_000):
        await dialogue.create_room(f"room-{i}", RoomConfig(name=f"room {i}"))
        await dialogue.trigger(f"room-{i}", "message", {})
        await dialogue.trigger(f"dm:u{i}:v{i}", "message", {})
    response = await get(srv.http_url + "/metrics")
    samples = parse(response.text)
    assert value(samples, "dialogue_events_total", room="runtime", event="message") == 10_000
    assert value(samples, "dialogue_events_total", room="dm:{a}:{b}", event="message") == 10_000
    rooms = {dict(labels)["room"] for (name, labels) in samples if name == "dialogue_events_total"}
    assert rooms == {"runtime", "dm:{a}:{b}"}
    assert len(response.content) < MAX_SCRAPE_BYTES


async def test_a_room_label_callable_is_capped_into_other(serve):
    config = MetricsConfig(room_label=lambda room: room.id, max_label_values=20)
    dialogue = chat(config)
    srv = await serve(dialogue)
    for i in range(10_000):
        await dialogue.create_room(f"room-{i}", RoomConfig(name=f"room {i}"))
        await dialogue.trigger(f"room-{i}", "message", {})
    response = await get(srv.http_url + "/metrics")
    samples = parse(response.text)
    rooms = {dict(labels)["room"] for (name, labels) in samples if name == "dialogue_events_total"}
    assert len(rooms) == 21 and "_other" in rooms
    assert value(samples, "dialogue_events_total", room="_other", event="message") == 10_000 - 20
    assert len(response.content) < MAX_SCRAPE_BYTES


async def test_event_names_are_capped_too(serve):
    dialogue = chat(MetricsConfig(max_label_values=5))
    srv = await serve(dialogue)
    for i in range(50):
        await dialogue.trigger("chat", f"event-{i}", {})
    samples = await scrape(srv.http_url + "/metrics")
    events = {dict(labels)["event"] for (name, labels) in samples if name == "dialogue_events_total"}
    assert len(events) == 6 and "_other" in events


async def test_room_and_event_pairs_are_capped_as_a_whole(serve):
    dialogue = chat(MetricsConfig(room_label=lambda room: room.id, max_event_series=10))
    srv = await serve(dialogue)
    for i in range(10):
        await dialogue.create_room(f"room-{i}", RoomConfig(name=f"room {i}"))
        for e in range(10):
            await dialogue.trigger(f"room-{i}", f"event-{e}", {})
    samples = await scrape(srv.http_url + "/metrics")
    pairs = {(dict(labels)["room"], dict(labels)["event"])
             for (name, labels) in samples if name == "dialogue_events_total"}
    assert len(pairs) == 11 and ("_other", "_other") in pairs
    assert sum(v for (name, _), v in samples.items() if name == "dialogue_events_total") == 100
