"""Which database errors are about the data (permanent) and which are outages.

The write-behind queue retries an outage forever but splits a batch the
database refuses as data, so one bad row never blocks the rows behind it.
The decision follows the driver's error class, not the message where a
class exists: PostgreSQL's SQLSTATE classes 22 (data exception) and 23
(integrity constraint violation) are data; asyncpg's errors reach us as a
plain SQLAlchemy ``DBAPIError`` whose ``orig`` carries ``sqlstate``/``pgcode``.
SQLite raises ``IntegrityError``/``DataError``, or ``OverflowError``/
``ValueError``/``TypeError`` while binding a parameter.
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from .base import PermanentStoreError

DATA_CLASSES = ("22", "23")  # data exception, integrity constraint violation
OUTAGE_CLASSES = ("08", "40", "53", "57", "58")  # connection, rollback, resources, shutdown, system
_BINDING = (OverflowError, ValueError, TypeError)  # a Python value the driver cannot bind
_SQLITE_DATA = ("bind", "embedded null", "null character", "too big")
_SQLITE_OUTAGE = ("locked", "busy", "unable to open", "disk i/o", "readonly", "disk is full")


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a PostgreSQL error, through SQLAlchemy's adapter (None: none)."""
    orig = getattr(exc, "orig", None)
    for candidate in (exc, orig, getattr(orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def permanent(exc: BaseException) -> bool:
    """Errors about the data itself (retrying the same rows cannot succeed)."""
    if isinstance(exc, (DataError, IntegrityError, *_BINDING)):
        return True
    code = sqlstate(exc)
    if code is not None:
        return code[:2] in DATA_CLASSES
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        if type(orig).__module__ == "sqlite3" and type(orig).__name__ in (
                "ProgrammingError", "InterfaceError", "DataError"):
            return any(word in str(orig).lower() for word in _SQLITE_DATA)
        return isinstance(orig, _BINDING)
    return isinstance(exc, StatementError)  # raised while building the statement


def outage(exc: BaseException) -> bool:
    """The database is unreachable or busy (retrying later can succeed)."""
    if isinstance(exc, OSError) or getattr(exc, "connection_invalidated", False):
        return True
    code = sqlstate(exc)
    if code is not None:
        return code[:2] in OUTAGE_CLASSES
    orig = getattr(exc, "orig", None)
    if isinstance(orig, OSError) or isinstance(exc.__cause__, OSError):
        return True
    text = str(orig if orig is not None else exc).lower()
    return "connection" in text or any(word in text for word in _SQLITE_OUTAGE)


def classify(exc: Exception) -> Exception:
    """Wrap data errors in :class:`PermanentStoreError`; anything else is transient."""
    if permanent(exc):
        return PermanentStoreError(first_line(exc))
    return exc


def first_line(exc: BaseException, limit: int = 300) -> str:
    lines = str(exc).splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
