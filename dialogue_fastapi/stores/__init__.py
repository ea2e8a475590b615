"""Event stores: ``None`` (hot history only), ``memory://``, a database URL, or an instance.

``sqlite+aiosqlite:///file.db`` and ``postgresql+asyncpg://...`` (also
written ``sqlite:///...`` / ``postgresql://...``) select the SQL store,
imported only then: its dependencies are the ``sqlite`` / ``postgres`` extras.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from .base import (
    AuditEntry,
    AuditQuery,
    AuditStore,
    DeadLetterStore,
    EventStore,
    HistoryQuery,
    PermanentStoreError,
    PrunableStore,
    Rejection,
    RoomStore,
    SingleWriterStore,
)
from .memory import MemoryStore

__all__ = [
    "AuditEntry", "AuditQuery", "AuditStore", "DeadLetterStore", "EventStore", "HistoryQuery",
    "MemoryStore", "PermanentStoreError", "PrunableStore", "Rejection", "RoomStore", "SingleWriterStore",
    "store_from_config",
]

_NEEDS = {
    "sqlite": ("sqlite", ["sqlalchemy", "greenlet", "aiosqlite"]),
    "postgres": ("postgres", ["sqlalchemy", "greenlet", "asyncpg"]),
}


def _check_extra(url: str) -> None:
    kind = "postgres" if url.startswith("postgres") else "sqlite"
    extra, modules = _NEEDS[kind]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"persistence={url.split('://')[0]}://... needs {', '.join(missing)}: "
            f'pip install "dialogue-fastapi[{extra}]"'
        )


def store_from_config(value: Any) -> EventStore | None:
    """Pick the store for ``persistence=``."""
    if value is None or value == "":
        return None
    if value == "memory://":
        return MemoryStore()
    if isinstance(value, str):
        if value.startswith(("sqlite", "postgres")):
            _check_extra(value)
            sql = importlib.import_module(".sql", __name__)
            store: EventStore = sql.SqlStore(value)
            return store
        raise ValueError(
            f"unknown persistence URL {value!r}: use 'sqlite+aiosqlite:///file.db', "
            "'postgresql+asyncpg://user@host/db' or 'memory://'"
        )
    if isinstance(value, EventStore):
        return value
    raise TypeError(f"persistence must be a URL or an EventStore, not {type(value).__name__}")
