"""dialogue-fastapi: real-time rooms and typed events for FastAPI.

Names are imported lazily, so ``import dialogue_fastapi.client`` does not
load the server side (FastAPI, the hub) in a client-only process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import DialogueConfig, Hooks, RateLimit, Retention, RoomConfig
    from .dialogue import Dialogue
    from .errors import CloseCode, DialogueError, Reject
    from .events import EventDefinition, define_event
    from .pipeline import PublishContext
    from .publisher import PublishTools
    from .rate_limit import EventLimiter, Limiter
    from .types import EventMessage, Identity, Position, PresenceEntry

_EXPORTS = {
    "CloseCode": ".errors",
    "Dialogue": ".dialogue",
    "DialogueConfig": ".config",
    "DialogueError": ".errors",
    "EventDefinition": ".events",
    "EventLimiter": ".rate_limit",
    "EventMessage": ".types",
    "Hooks": ".config",
    "Identity": ".types",
    "Limiter": ".rate_limit",
    "Position": ".types",
    "PresenceEntry": ".types",
    "PublishContext": ".pipeline",
    "PublishTools": ".publisher",
    "RateLimit": ".config",
    "Reject": ".errors",
    "Retention": ".config",
    "RoomConfig": ".config",
    "define_event": ".events",
}

__all__ = [
    "CloseCode",
    "Dialogue",
    "DialogueConfig",
    "DialogueError",
    "EventDefinition",
    "EventLimiter",
    "EventMessage",
    "Hooks",
    "Identity",
    "Limiter",
    "Position",
    "PresenceEntry",
    "PublishContext",
    "PublishTools",
    "RateLimit",
    "Reject",
    "Retention",
    "RoomConfig",
    "define_event",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'dialogue_fastapi' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value
