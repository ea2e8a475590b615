"""Credentials in query strings never reach uvicorn's logs.

uvicorn writes each request's path with its query string: HTTP requests to the
``uvicorn.access`` logger, WebSocket handshakes (``"WebSocket /ws?token=..."
[accepted]``) to ``uvicorn.error``. A browser has to put its credentials in the
URL of ``/ws`` and ``/sse``, so :func:`install_redaction` adds a
``logging.Filter`` to both loggers that replaces the values of ``token``,
``ticket``, ``access_token`` and similar parameters with ``***`` before any
handler formats the record. No uvicorn code is patched; installing twice adds
one filter.
"""

from __future__ import annotations

import logging
import re

REDACTED = "***"
LOGGERS = ("uvicorn.access", "uvicorn.error")

# parameter names matched whole and case-insensitively (after ? or &)
SENSITIVE = (
    r"[a-z_]*token|ticket|auth|authorization|api[_-]?key|apikey|key|secret|client_secret"
    r"|password|passwd|pwd|jwt|session|sessionid|code|signature|sig"
)
_PARAM = re.compile(rf"(?i)([?&](?:{SENSITIVE})=)[^&#\s\"]*")


def redact(text: str) -> str:
    """``text`` with every sensitive query parameter's value replaced by ``***``."""
    if "=" not in text:
        return text
    return _PARAM.sub(rf"\g<1>{REDACTED}", text)


class QueryRedactor(logging.Filter):
    """Redacts sensitive query values in a record's message and string arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
        return True


def install_redaction(names: tuple[str, ...] = LOGGERS) -> None:
    """Add a :class:`QueryRedactor` to each logger of ``names`` that has none yet."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QueryRedactor) for f in logger.filters):
            logger.addFilter(QueryRedactor())
