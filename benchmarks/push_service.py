"""The fake Web Push service of the tests (``tests/push/fakes/webpush.py``) as a process, for ``push.py``.

    python benchmarks/push_service.py PORT SUBSCRIPTIONS [--server uvicorn|hypercorn] [--sample N]

It is the tests' fake unchanged: per POST it verifies the VAPID JWT (ES256 signature,
``aud``, ``exp``, ``sub``), checks the headers and the record size, and decrypts the
aes128gcm body with the subscription's private key. That costs it ~0.6 ms of CPU per
push (92% of its core at ~1,530 pushes/s from the aiohttp sender), as much as the
sender spends, so it may be what sets the rate.
``--sample N`` (N > 1) lightens it so that the sender, not the fake, sets the rate:
each distinct ``Authorization`` header is verified in full the first time it comes
(signature, ``aud``, ``sub``; ``exp`` checked again on every push; the sender reuses
a signed header per push service, so that is once per run, or every push with
``sign-each``), the headers and record size are checked on every push, and one push
in N is decrypted and its JSON parsed (a failure is counted as rejected either way).

Added here: ``SUBSCRIPTIONS`` subscriptions made at start-up, ``GET /bench/devices``
(their endpoints and public keys, what a browser would register) and ``GET /bench/stats``
(accepted, refused and decrypted pushes so far; the received list is emptied on each
call so memory stays flat).

``--server uvicorn``: HTTP/1.1 (httptools); ``--server hypercorn``: HTTP/1.1 and HTTP/2
with prior knowledge (h2c) on the same port, for the sender's ``http2`` measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "push"))

import http_ece  # type: ignore[import-untyped]
import orjson
from fakes.webpush import FakeWebPush, Received
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class SampledWebPush(FakeWebPush):
    """The fake with VAPID verified once per distinct header and one payload in ``every`` decrypted."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = every
        self.count = 0
        self.decrypted = 0
        self._verified: dict[str, dict[str, Any]] = {}

    async def _push(self, request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        sub = self._subscriptions.get(path)
        if sub is None:
            return self._reject(path, 404, "no such subscription")
        header = request.headers.get("authorization", "")
        claims = self._verified.get(header)
        if claims is None or claims["exp"] <= time.time():
            checked = self._check_vapid(path, header)
            if isinstance(checked, Response):
                return checked
            if len(self._verified) > 10_000:
                self._verified.clear()
            claims = self._verified[header] = checked
        problem = self._check_headers(request, body)
        if problem is not None:
            return self._reject(path, *problem)
        self.count += 1
        payload: dict[str, Any] = {}
        if self.count % self.every == 0:
            try:
                payload = orjson.loads(http_ece.decrypt(body, private_key=sub.private_key,
                                                        auth_secret=sub.auth, version="aes128gcm"))
            except Exception as exc:
                return self._reject(path, 400, f"cannot decrypt: {exc!r}")
            self.decrypted += 1
        self.received.append(Received(path, 201, payload, int(request.headers["ttl"]),
                                      request.headers.get("urgency"), request.headers.get("topic"),
                                      claims, len(body)))
        return Response(b"", 201)


def build(port: int, subscriptions: int, sample: int = 1) -> FakeWebPush:
    fake = FakeWebPush() if sample <= 1 else SampledWebPush(sample)
    fake.origin = f"http://127.0.0.1:{port}"
    subs = [fake.subscribe() for _ in range(subscriptions)]
    devices = [{"endpoint": s.endpoint, "keys": s.device().keys} for s in subs]

    async def list_devices(_: Request) -> JSONResponse:
        return JSONResponse(devices)

    async def stats(_: Request) -> JSONResponse:
        received, rejected = len(fake.received), list(fake.rejected)
        fake.received.clear()
        fake.rejected.clear()
        decrypted = fake.decrypted if isinstance(fake, SampledWebPush) else received
        if isinstance(fake, SampledWebPush):
            fake.decrypted = 0
        return JSONResponse({"received": received, "rejected": len(rejected), "decrypted": decrypted,
                             "reasons": sorted({r[2] for r in rejected})[:5]})

    fake.app.router.routes[:0] = [Route("/bench/devices", list_devices), Route("/bench/stats", stats)]
    return fake


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("subscriptions", type=int)
    p.add_argument("--server", choices=("uvicorn", "hypercorn"), default="uvicorn")
    p.add_argument("--sample", type=int, default=1, help="decrypt one push in N (1: every push, in full)")
    a = p.parse_args()
    fake = build(a.port, a.subscriptions, a.sample)
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
