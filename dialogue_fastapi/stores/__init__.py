"""Event stores: ``None`` (hot history only), ``memory://``, or an instance."""

from __future__ import annotations

from typing import Any

from .base import EventStore, HistoryQuery
from .memory import MemoryStore

__all__ = ["EventStore", "HistoryQuery", "MemoryStore", "store_from_config"]


def store_from_config(value: Any) -> EventStore | None:
    """Pick the store for ``persistence=``."""
    if value is None or value == "":
        return None
    if value == "memory://":
        return MemoryStore()
    if isinstance(value, str):
        if value.startswith(("sqlite", "postgresql")):
            raise ValueError(
                "the SQL event store is not built yet in this version; "
                "use persistence=None or 'memory://'"
            )
        raise ValueError(f"unknown persistence URL {value!r}")
    if isinstance(value, EventStore):
        return value
    raise TypeError(f"persistence must be a URL or an EventStore, not {type(value).__name__}")
