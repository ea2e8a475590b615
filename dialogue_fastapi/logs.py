"""Structured logs: one JSON object per line, with the fields the library puts on records.

The library's records about a connection or a publish carry ``extra=`` fields
(``client_id``, ``user_id``, ``room``, ``event``, ``seq``, ``correlation_id``,
and ``log_events``' ``record.dialogue`` with ``trace_id``/``span_id`` when a
span is active). :class:`JsonFormatter` renders a record with all of them;
:func:`install_json_logs` puts it on the ``dialogue_fastapi`` logger in one call.

Credentials never reach the output: the message, the traceback and every
string field pass through the query-string rules of ``auth/log_redaction``
(``?token=``, ``&ticket=``, ...), then ``Bearer``/``Basic`` credentials, JWTs
and ``token=...`` / ``password: ...`` pairs anywhere in the text are masked,
and a field whose name says it holds a secret (``token``, ``authorization``,
``password``, ...) is written as ``***``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from .auth.log_redaction import REDACTED, redact

__all__ = ["JsonFormatter", "install_json_logs", "scrub"]

TraceIds = Callable[[], tuple[str, str] | None]

#: attributes every LogRecord has: not extra fields (uvicorn's ``color_message`` repeats the message)
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}
_SECRET = r"[a-z_]*token|ticket|auth|authorization|api[_-]?key|apikey|secret|client_secret|password" \
          r"|passwd|pwd|jwt|cookie|set[_-]cookie|session|sessionid|signature"
_SECRET_FIELD = re.compile(rf"(?i)(?:{_SECRET})")
_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]+")
_JWT = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*")
_PAIR = re.compile(
    rf"(?i)(?<![\w-])((?:{_SECRET})\s*[=:]\s*\"?)(?!(?:bearer|basic)\s|\*\*\*)[^\s&#\"',;]+")


def scrub(text: str) -> str:
    """``text`` with credentials masked: sensitive query values, ``Bearer``/``Basic``
    credentials, JWTs, and ``token=...``-style pairs."""
    text = redact(text)
    text = _CREDENTIAL.sub(rf"\g<1> {REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    return _PAIR.sub(rf"\g<1>{REDACTED}", text)


def _clean(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if depth > 8:
        return REDACTED if isinstance(value, dict | list | tuple) else value
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and _SECRET_FIELD.fullmatch(k)
                else _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    return value


def _default(value: Any) -> str:
    return scrub(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, every ``extra=`` field (``record.dialogue`` flattened), and ``exc_info``.

    ``trace_ids=True`` (needs the ``otel`` extra) adds ``trace_id``/``span_id`` of the
    active OpenTelemetry span to records that have none; a callable returning
    ``(trace_id, span_id)`` or None works too."""

    def __init__(self, *, trace_ids: bool | TraceIds = False) -> None:
        super().__init__()
        self._ids: TraceIds | None = None
        if trace_ids is True:
            try:
                from .tracing.otel import current_ids
            except ImportError as exc:
                raise ImportError('trace_ids=True needs the otel extra: '
                                  'pip install "dialogue-fastapi[otel]"') from exc
            self._ids = current_ids
        elif callable(trace_ids):
            self._ids = trace_ids

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key in _STANDARD:
                continue
            if key == "dialogue" and isinstance(value, dict):  # log_events' fields
                out.update(_clean(value))
            else:
                out[key] = REDACTED if _SECRET_FIELD.fullmatch(key) else _clean(value)
        if self._ids is not None and "trace_id" not in out:
            ids = self._ids()
            if ids is not None:
                out["trace_id"], out["span_id"] = ids
        if record.exc_info:
            out["exc_info"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc_info"] = scrub(record.exc_text)
        if record.stack_info:
            out["stack_info"] = scrub(self.formatStack(record.stack_info))
        return orjson.dumps(out, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()


class _JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`install_json_logs` adds (found again to replace it)."""


def install_json_logs(
    logger: str = "dialogue_fastapi", *, level: int | str | None = logging.INFO,
    stream: IO[str] | None = None, trace_ids: bool = False, propagate: bool = False,
) -> logging.Handler:
    """Write ``logger``'s records (and its children's: ``dialogue_fastapi.events``) as JSON
    lines to ``stream`` (stderr). ``level``: the logger's level (None: unchanged);
    ``propagate=False`` keeps them from being written again by the root logger's handlers.
    Calling it again replaces the handler it added before. Returns the handler."""
    target = logging.getLogger(logger)
    for old in [h for h in target.handlers if isinstance(h, _JsonHandler)]:
        target.removeHandler(old)
    handler = _JsonHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(trace_ids=trace_ids))
    target.addHandler(handler)
    if level is not None:
        target.setLevel(level)
    target.propagate = propagate
    return handler
