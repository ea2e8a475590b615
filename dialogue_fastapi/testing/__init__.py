"""Test helpers for apps and adapters built on dialogue-fastapi.

- :func:`live_server` / :class:`LiveServer`: a real uvicorn on a free port.
- :class:`WsProbe`: a raw protocol-v1 client.
- :class:`SseProbe`: an SSE client of ``GET /sse``, parsed into messages.
- :class:`BrokerContract` / :class:`EventStoreContract`: contract suites a
  broker or store implementation (yours too) must pass; subclass one in
  your tests and provide the ``make`` fixture.
"""

from .broker_contract import BrokerContract
from .server import LiveServer, ProbeError, WsProbe, live_server
from .sse_probe import SseProbe
from .store_contract import (
    AuditStoreContract,
    EventStoreContract,
    FullStoreContract,
    PrunableStoreContract,
    RoomStoreContract,
)

__all__ = [
    "AuditStoreContract",
    "BrokerContract",
    "EventStoreContract",
    "FullStoreContract",
    "LiveServer",
    "ProbeError",
    "PrunableStoreContract",
    "RoomStoreContract",
    "SseProbe",
    "WsProbe",
    "live_server",
]
