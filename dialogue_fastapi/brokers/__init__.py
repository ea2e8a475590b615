"""Brokers: chosen by URL (``memory://``, ``redis://``) or passed as an instance."""

from __future__ import annotations

from typing import Any

from .base import Broker, Presence, Published
from .memory import MemoryBroker

__all__ = ["Broker", "MemoryBroker", "Presence", "Published", "broker_from_config"]


def broker_from_config(value: Any, *, hot_bytes: int = 0) -> Broker:
    """``"memory://"`` -> MemoryBroker (``hot_bytes``: its node-wide budget of hot events);
    ``"redis://..."`` -> RedisBroker; an instance as is."""
    if value is None or value == "memory://":
        return MemoryBroker(hot_bytes)
    if isinstance(value, str):
        if value.startswith(("redis://", "rediss://", "unix://")):
            try:
                import redis  # noqa: F401
            except ImportError:
                raise ImportError(
                    'the Redis broker needs redis-py: pip install "dialogue-fastapi[redis]"'
                ) from None
            from .redis import RedisBroker

            return RedisBroker(value)
        raise ValueError(f"unknown broker URL {value!r}: use 'memory://' or 'redis://host:6379/0'")
    if isinstance(value, Broker):
        return value
    raise TypeError(f"broker must be a URL or a Broker, not {type(value).__name__}")
