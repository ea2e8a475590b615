"""Telling a backend outage (Redis or a database away) from a bug.

An operation that fails because a backend cannot be reached answers
``UNAVAILABLE`` (retry later), not ``INTERNAL``. Backends are recognised by
their exception classes' names, so the core imports no backend library.
"""

from __future__ import annotations

_OUTAGE_CLASSES = {
    ("redis", "ConnectionError"), ("redis", "TimeoutError"), ("redis", "BusyLoadingError"),
    ("redis", "ReadOnlyError"), ("sqlalchemy", "OperationalError"),
    ("sqlalchemy", "InterfaceError"), ("sqlalchemy", "DisconnectionError"),
}


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` says a backend could not be reached (not that a request was bad)."""
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    for cls in type(exc).__mro__:
        if (cls.__module__.split(".", 1)[0], cls.__name__) in _OUTAGE_CLASSES:
            return True
    return False
