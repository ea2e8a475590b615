"""Telling a backend outage (Redis or a database away) from a bug.

An operation that fails because a backend cannot be reached answers
``UNAVAILABLE`` (retry later), not ``INTERNAL``. Backends are recognised by
their exception classes' names, so the core imports no backend library.
"""

from __future__ import annotations

import logging
import secrets

from .errors import DialogueError, InternalError, Unavailable

logger = logging.getLogger("dialogue_fastapi")

_OUTAGE_CLASSES = {
    ("redis", "ConnectionError"), ("redis", "TimeoutError"), ("redis", "BusyLoadingError"),
    ("redis", "ReadOnlyError"), ("redis", "ClusterDownError"), ("redis", "MasterDownError"),
    ("redis", "TryAgainError"), ("redis", "SlotNotCoveredError"),  # a Redis Cluster failing over
    ("sqlalchemy", "OperationalError"),
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


def protocol_error(exc: Exception, what: str) -> DialogueError:
    """An exception that escaped an operation, as the protocol's error: ``UNAVAILABLE``
    for a backend outage (a warning in the log), else ``INTERNAL`` with a correlation id
    that is also in the logged traceback. The one place that tells them apart."""
    if is_outage(exc):
        logger.warning("%s: backend unavailable (%s: %s)", what, type(exc).__name__, exc)
        return Unavailable("a backend is unavailable; retry later")
    cid = "err_" + secrets.token_hex(6)
    logger.error("%s failed [%s]", what, cid, exc_info=exc, extra={"correlation_id": cid})
    return InternalError(f"internal error; correlation id {cid}", correlation_id=cid)
