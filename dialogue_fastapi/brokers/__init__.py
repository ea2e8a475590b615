"""Brokers: chosen by URL (``memory://``, ``redis://``, ``redis+cluster://``) or passed as an
instance."""

from __future__ import annotations

from typing import Any

from .base import Broker, Presence, Published
from .memory import MemoryBroker

__all__ = ["Broker", "MemoryBroker", "Presence", "Published", "broker_from_config"]


def broker_from_config(value: Any, *, hot_bytes: int = 0) -> Broker:
    """``"memory://"`` -> MemoryBroker (``hot_bytes``: its node-wide budget of hot events);
    ``"redis://..."`` -> RedisBroker; ``"redis+cluster://host:port,..."`` -> RedisClusterBroker;
    an instance as is."""
    if value is None or value == "memory://":
        return MemoryBroker(hot_bytes)
    if isinstance(value, str):
        cluster = value.startswith(("redis+cluster://", "rediss+cluster://"))
        if cluster or value.startswith(("redis://", "rediss://", "unix://")):
            try:
                import redis  # noqa: F401
            except ImportError:
                raise ImportError(
                    'the Redis broker needs redis-py: pip install "dialogue-fastapi[redis]"'
                ) from None
            if cluster:
                from .redis_cluster import RedisClusterBroker

                return RedisClusterBroker(value)
            from .redis import RedisBroker

            return RedisBroker(value)
        raise ValueError(f"unknown broker URL {value!r}: use 'memory://', 'redis://host:6379/0' "
                         "or 'redis+cluster://host:7000,host:7001'")
    if isinstance(value, Broker):
        return value
    raise TypeError(f"broker must be a URL or a Broker, not {type(value).__name__}")
