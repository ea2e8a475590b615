"""Deployment settings read from ``DIALOGUE_*`` environment variables, and TOML room helpers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .events import EventDefinition

ENV_SETTINGS: dict[str, str] = {
    "DIALOGUE_BROKER_URL": "broker",
    "DIALOGUE_DATABASE_URL": "persistence",
    "DIALOGUE_ALLOWED_ORIGINS": "allowed_origins",
    "DIALOGUE_ALLOW_ANONYMOUS": "allow_anonymous",
    "DIALOGUE_MAX_MESSAGE_SIZE": "max_message_size",
    "DIALOGUE_SEND_QUEUE_MAX_MESSAGES": "send_queue_max_messages",
    "DIALOGUE_SEND_QUEUE_MAX_BYTES": "send_queue_max_bytes",
    "DIALOGUE_HEARTBEAT": "heartbeat",
    "DIALOGUE_RECOVERY_WINDOW": "recovery_window",
    "DIALOGUE_HOT_HISTORY_BYTES": "hot_history_bytes",
    "DIALOGUE_MAX_INSTANCES": "max_instances",
    "DIALOGUE_DURABLE": "durable",
    "DIALOGUE_WRITE_MAX_PENDING": "write_max_pending",
    "DIALOGUE_WRITE_INTERVAL": "write_interval",
}


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Deployment settings read from ``DIALOGUE_*`` environment variables."""
    source = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    for var, field_name in ENV_SETTINGS.items():
        raw = source.get(var)
        if raw is None or raw == "":
            continue
        if field_name == "allowed_origins":
            found[field_name] = [item.strip() for item in raw.split(",") if item.strip()]
        else:
            found[field_name] = raw
    return found


def resolve_room_events(
    raw: dict[str, Any], events: Sequence[EventDefinition]
) -> dict[str, Any]:
    """TOML rooms name their events; swap the names for the definitions."""
    by_name = {definition.name: definition for definition in events}
    names = raw.get("events") or []
    missing = [name for name in names if isinstance(name, str) and name not in by_name]
    if missing:
        raise ValueError(f"rooms name undefined events {missing}: pass them in events=[...]")
    return {**raw, "events": [by_name[n] if isinstance(n, str) else n for n in names]}
