"""Browser origins on ``/ws`` and ``/sse``: same-origin means the same scheme, host and port
(default ports filled in); other origins must be listed in ``allowed_origins``."""

from __future__ import annotations

import pytest
from helpers import authenticate

from dialogue_fastapi import Dialogue, RoomConfig
from dialogue_fastapi.auth.origins import origin_allowed
from dialogue_fastapi.testing import SseProbe

ROOMS = {"chat": RoomConfig(name="Chat")}


@pytest.mark.parametrize(("origin", "scheme", "host", "allowed", "expected"), [
    (None, "http", "a.example", [], True),
    ("http://a.example", "http", "a.example", [], True),
    ("http://a.example:80", "ws", "a.example", [], True),  # default port, ws counts as http
    ("https://a.example", "wss", "a.example:443", [], True),
    ("HTTP://A.Example:8000", "http", "a.example:8000", [], True),
    ("http://[::1]:8000", "ws", "[::1]:8000", [], True),
    ("https://a.example", "http", "a.example", [], False),  # scheme differs
    ("http://a.example:8001", "http", "a.example:8000", [], False),  # port differs
    ("http://a.example", "http", "a.example:8000", [], False),
    ("https://a.example:8000", "ws", "a.example:8000", [], False),
    ("http://evil.example", "http", "a.example", [], False),
    ("null", "http", "a.example", [], False),
    ("http://a.example:bad", "http", "a.example", [], False),
    ("https://app.example:443", "http", "a.example", ["https://app.example"], True),
    ("https://app.example", "http", "a.example", ["https://app.example:443/"], True),
    ("http://app.example", "http", "a.example", ["https://app.example"], False),
    ("https://app.example:8443", "http", "a.example", ["https://app.example"], False),
    ("http://anything", "http", "a.example", ["*"], True),
])
def test_origin_allowed(origin, scheme, host, allowed, expected) -> None:
    assert origin_allowed(origin, scheme, host, allowed) is expected


def make(**settings) -> Dialogue:
    settings.setdefault("authenticate", authenticate)
    return Dialogue(rooms=ROOMS, **settings)


async def test_websocket_same_host_but_other_port_or_scheme_is_refused(serve, probe):
    srv = await serve(make())
    same = await probe(srv.ws_url("/ws?token=a"), origin=f"http://127.0.0.1:{srv.port}")
    assert same.hello["user_id"] == "a"
    for origin in (f"http://127.0.0.1:{srv.port + 1}", f"https://127.0.0.1:{srv.port}"):
        refused = await probe(srv.ws_url("/ws?token=a"), hello=False, origin=origin)
        code, reason = await refused.closed(timeout=2)
        assert (code, reason) == (1008, f"origin {origin} is not allowed; add it to allowed_origins")


async def test_sse_refuses_a_foreign_origin_with_403(serve):
    srv = await serve(make())
    url = srv.http_url + "/sse?room=chat&token=a"
    evil = await SseProbe.open(url, headers={"Origin": "https://evil.example"})
    await evil.close()
    assert evil.status == 403
    assert evil.error() == {
        "code": "FORBIDDEN",
        "message": "origin https://evil.example is not allowed; add it to allowed_origins",
    }
    other_port = await SseProbe.open(url, headers={"Origin": f"http://127.0.0.1:{srv.port + 1}"})
    await other_port.close()
    assert other_port.status == 403 and other_port.error()["code"] == "FORBIDDEN"
    for headers in ({"Origin": f"http://127.0.0.1:{srv.port}"}, {}):  # same-origin, no Origin
        ok = await SseProbe.open(url, headers=headers)
        await ok.close()
        assert ok.status == 200 and ok.hello["user_id"] == "a"


async def test_sse_origin_is_checked_before_credentials(serve):
    srv = await serve(make(authenticate=lambda conn: None))  # no credentials: 401 otherwise
    refused = await SseProbe.open(srv.http_url + "/sse?room=chat",
                                  headers={"Origin": "https://evil.example"})
    await refused.close()
    assert refused.status == 403 and refused.error()["code"] == "FORBIDDEN"


async def test_sse_accepts_listed_origins_with_default_ports_normalised(serve):
    srv = await serve(make(allowed_origins=["https://app.example"]))
    url = srv.http_url + "/sse?room=chat&token=a"
    for origin in ("https://app.example", "https://app.example:443"):
        ok = await SseProbe.open(url, headers={"Origin": origin})
        await ok.close()
        assert ok.status == 200
    refused = await SseProbe.open(url, headers={"Origin": "http://app.example"})
    await refused.close()
    assert refused.status == 403
