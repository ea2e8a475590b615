"""The fake Web Push service of the tests (``tests/push/fakes/webpush.py``) as a process, for ``push.py``.

    python benchmarks/push_service.py PORT SUBSCRIPTIONS [--server uvicorn|hypercorn]

It is the tests' fake unchanged: per POST it verifies the VAPID JWT (ES256 signature,
``aud``, ``exp``, ``sub``), checks the headers and the record size, and decrypts the
aes128gcm body with the subscription's private key. Added here: ``SUBSCRIPTIONS``
subscriptions made at start-up, ``GET /bench/devices`` (their endpoints and public
keys, what a browser would register) and ``GET /bench/stats`` (accepted and refused
pushes so far; the received list is emptied on each call so memory stays flat).

``--server uvicorn``: HTTP/1.1 (httptools); ``--server hypercorn``: HTTP/1.1 and HTTP/2
with prior knowledge (h2c) on the same port, for the sender's ``http2`` measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "push"))

from fakes.webpush import FakeWebPush
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def build(port: int, subscriptions: int) -> FakeWebPush:
    fake = FakeWebPush()
    fake.origin = f"http://127.0.0.1:{port}"
    subs = [fake.subscribe() for _ in range(subscriptions)]
    devices = [{"endpoint": s.endpoint, "keys": s.device().keys} for s in subs]

    async def list_devices(_: Request) -> JSONResponse:
        return JSONResponse(devices)

    async def stats(_: Request) -> JSONResponse:
        received, rejected = len(fake.received), list(fake.rejected)
        fake.received.clear()
        fake.rejected.clear()
        return JSONResponse({"received": received, "rejected": len(rejected),
                             "reasons": sorted({r[2] for r in rejected})[:5]})

    fake.app.router.routes[:0] = [Route("/bench/devices", list_devices), Route("/bench/stats", stats)]
    return fake


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("subscriptions", type=int)
    p.add_argument("--server", choices=("uvicorn", "hypercorn"), default="uvicorn")
    a = p.parse_args()
    fake = build(a.port, a.subscriptions)
    if a.server == "uvicorn":
        import uvicorn

        uvicorn.run(fake.app, host="127.0.0.1", port=a.port, log_level="warning", access_log=False,
                    http="httptools")
    else:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{a.port}"]
        config.loglevel = "WARNING"
        config.accesslog = None
        config.keep_alive_max_requests = 10**9  # its default (1,000) ends a connection with GOAWAY
        asyncio.run(serve(fake.app, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
