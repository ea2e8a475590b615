"""dialogue-fastapi: real-time rooms and typed events for FastAPI.

Names are imported lazily, so ``import dialogue_fastapi.client`` does not
load the server side (FastAPI, the hub) in a client-only process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.config import (
        DialogueConfig,
        Hooks,
        MetricsConfig,
        RateLimit,
        Retention,
        RoomConfig,
        TracingConfig,
    )
    from .core.errors import CloseCode, DialogueError, Reject
    from .core.events import EventDefinition, define_event
    from .core.notifications import Notification, PushTemplate
    from .core.push_config import APNSConfig, FCMConfig, PushConfig
    from .core.types import EventMessage, Identity, Position, PresenceEntry
    from .dialogue import Dialogue
    from .limits.events import EventLimiter, Limiter
    from .logs import JsonFormatter, install_json_logs
    from .publish.pipeline import PublishContext
    from .publish.submission import PublishTools

_EXPORTS = {
    "APNSConfig": ".core.push_config",
    "CloseCode": ".core.errors",
    "Dialogue": ".dialogue",
    "DialogueConfig": ".core.config",
    "DialogueError": ".core.errors",
    "EventDefinition": ".core.events",
    "EventLimiter": ".limits.events",
    "EventMessage": ".core.types",
    "FCMConfig": ".core.push_config",
    "Hooks": ".core.config",
    "Identity": ".core.types",
    "JsonFormatter": ".logs",
    "Limiter": ".limits.events",
    "MetricsConfig": ".core.config",
    "Notification": ".core.notifications",
    "Position": ".core.types",
    "PresenceEntry": ".core.types",
    "PublishContext": ".publish.pipeline",
    "PublishTools": ".publish.submission",
    "PushConfig": ".core.push_config",
    "PushTemplate": ".core.notifications",
    "RateLimit": ".core.config",
    "Reject": ".core.errors",
    "Retention": ".core.config",
    "RoomConfig": ".core.config",
    "TracingConfig": ".core.config",
    "define_event": ".core.events",
    "install_json_logs": ".logs",
}

__all__ = [
    "APNSConfig",
    "CloseCode",
    "Dialogue",
    "DialogueConfig",
    "DialogueError",
    "EventDefinition",
    "EventLimiter",
    "EventMessage",
    "FCMConfig",
    "Hooks",
    "Identity",
    "JsonFormatter",
    "Limiter",
    "MetricsConfig",
    "Notification",
    "Position",
    "PresenceEntry",
    "PublishContext",
    "PublishTools",
    "PushConfig",
    "PushTemplate",
    "RateLimit",
    "Reject",
    "Retention",
    "RoomConfig",
    "TracingConfig",
    "define_event",
    "install_json_logs",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'dialogue_fastapi' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value
