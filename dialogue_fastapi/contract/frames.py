"""Building blocks of the AsyncAPI document: a bag of component schemas that takes
pydantic JSON schemas (``$defs`` hoisted, refs rewritten) and the fixed frames of
protocol v1 (replies, errors, ``hello``, the envelope, the server's own frames)."""

from __future__ import annotations

import re
from typing import Any

from ..core.errors import ERRORS_BY_CODE

SCHEMAS = "#/components/schemas/"
_DEFS = "#/$defs/"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")  # component keys must match ^[\w\d\.\-_]+$


def safe_key(name: str) -> str:
    """``name`` as a component key (``dm:alice`` -> ``dm_alice``)."""
    return _UNSAFE.sub("_", name) or "_"


def ref(key: str) -> dict[str, str]:
    return {"$ref": SCHEMAS + key}


def _rewrite(node: Any, names: dict[str, str]) -> Any:
    """A copy of ``node`` whose ``#/$defs/X`` refs point at ``components/schemas``."""
    if isinstance(node, dict):
        out = {k: _rewrite(v, names) for k, v in node.items() if k != "$defs"}
        target = node.get("$ref")
        if isinstance(target, str) and target.startswith(_DEFS):
            name = target.removeprefix(_DEFS)
            out["$ref"] = SCHEMAS + names.get(name, safe_key(name))
        return out
    if isinstance(node, list):
        return [_rewrite(item, names) for item in node]
    return node


class SchemaBag:
    """``components/schemas``: equal schemas share a key, different ones get ``_2``, ``_3``..."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def _free(self, key: str, schema: Any) -> bool:
        return key not in self.schemas or self.schemas[key] == schema

    def inline(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Hoist the ``$defs`` of a JSON schema into the bag; returns the schema without them."""
        defs: dict[str, Any] = schema.get("$defs", {})
        names = {name: safe_key(name) for name in defs}
        while True:  # renaming one def changes the refs of the others: repeat until stable
            rewritten = {name: _rewrite(body, names) for name, body in defs.items()}
            clashes = [n for n in defs if not self._free(names[n], rewritten[n])]
            if not clashes:
                break
            for name in clashes:
                names[name] = self._next_key(names[name])
        for name, body in rewritten.items():
            self.schemas[names[name]] = body
        result: dict[str, Any] = _rewrite(schema, names)
        return result

    def add(self, key: str, schema: dict[str, Any]) -> str:
        """Put ``schema`` (already without ``$defs``) under ``key`` or a free variant of it."""
        key = safe_key(key)
        while not self._free(key, schema):
            key = self._next_key(key)
        self.schemas[key] = schema
        return key

    def _next_key(self, key: str) -> str:
        stem, _, number = key.rpartition("_")
        if stem and number.isdigit():
            return f"{stem}_{int(number) + 1}"
        return f"{key}_2"


def _obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required, **extra}


def _op(name: str) -> dict[str, Any]:
    return {"type": "string", "const": name}


_STR = {"type": "string"}
_INT = {"type": "integer"}


def fixed_schemas() -> dict[str, Any]:
    """The frames and objects of protocol v1 that do not depend on the configuration."""
    error = _obj(
        {"code": ref("ErrorCode"), "message": _STR,
         "details": {"type": "array", "items": {"type": "object"},
                     "description": "BAD_REQUEST / VALIDATION_FAILED: {loc, msg, type} per error"},
         "retry_after": {"type": "number", "description": "RATE_LIMITED: seconds"},
         "limit": {"type": "string", "description": "RATE_LIMITED: e.g. '10/second'"},
         "reason": {"type": "string", "description": "BLOCKED / JOIN_DENIED"},
         "correlation_id": {"type": "string", "description": "INTERNAL: matches the server log"}},
        ["code", "message"], additionalProperties=True,
    )
    hello = {"op": _op("hello"), "client_id": _STR, "user_id": _STR,
             "protocol": {"type": "integer", "const": 1},
             "heartbeat": {"type": "number", "description": "seconds; 0: no heartbeat"}}
    presence = {"room": _STR, "user_id": _STR, "client_id": _STR}
    return {
        "ErrorCode": {"type": "string", "enum": list(ERRORS_BY_CODE),
                      "description": "the protocol's error codes (section 3)"},
        "Error": error,
        "Position": _obj({"seq": {"type": "integer", "minimum": 0}, "epoch": _STR}),
        "RoomInfo": _obj(
            {"id": _STR, "name": _STR, "description": {"type": ["string", "null"]},
             "max_size": {"type": ["integer", "null"]}, "size": _INT,
             "events": {"type": "array", "items": _STR},
             "default_subscriptions": {"type": "array", "items": _STR},
             "channels": {"type": "array", "items": _STR},
             "created_by": {"type": ["string", "null"]}}),
        "EventEnvelope": envelope("", None, {}),
        "ReplyOk": _obj({"id": _INT, "ok": {"type": "boolean", "const": True},
                         "result": {"type": "object", "description": "what the op answers"}}),
        "ReplyError": _obj({"id": _INT, "ok": {"type": "boolean", "const": False},
                            "error": ref("Error")}),
        "Hello": _obj(hello),
        "SseHello": _obj({**hello, "positions": {
            "type": "object", "additionalProperties": ref("Position"),
            "description": "per room: the position the stream starts after"}}),
        "Direct": _obj({"op": _op("direct"), "event": _STR, "data": {}, "from": _STR, "ts": _INT}),
        "PresenceJoin": _obj({"op": _op("presence_join"), **presence}),
        "PresenceLeave": _obj({"op": _op("presence_leave"), **presence}),
        "RoomCreated": _obj({"op": _op("room_created"), "room": ref("RoomInfo")}),
        "RoomDeleted": _obj({"op": _op("room_deleted"), "room": _STR}),
        "ErrorFrame": _obj({"op": _op("error"), "error": ref("Error")}),
        "Disconnect": _obj({"op": _op("disconnect"), "code": _INT, "reason": _STR,
                            "reconnect": {"type": "boolean"}}),
        "RecoverFailed": _obj({"op": _op("recover_failed"), "room": _STR, "position": ref("Position")}),
    }


def envelope(room: str | dict[str, Any], event: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """The event envelope (section 1); ``room``/``event`` pinned when given (``room`` may
    also be the schema of the ids of a room family)."""
    pinned = {"type": "string", "const": room} if room else _STR
    return _obj(
        {"op": _op("event"), "room": room if isinstance(room, dict) else pinned,
         "event": {"type": "string", "const": event} if event is not None else _STR,
         "data": data, "from": {"type": "string", "description": "user id, or 'server'"},
         "ts": {"type": "integer", "description": "milliseconds since the Unix epoch"},
         "seq": {"type": "integer", "minimum": 1, "description": "per room, +1 per event"},
         "meta": {"type": "object"}},
        ["op", "room", "event", "data", "from", "ts", "seq"],
    )


#: messages of the server's own frames: key -> (schema, title); used on both channels
SERVER_FRAMES: dict[str, tuple[str, str]] = {
    "hello": ("Hello", "First frame after the WebSocket is accepted"),
    "direct": ("Direct", "An event sent to this user or client by the application"),
    "presence_join": ("PresenceJoin", "A member joined (rooms with presence events)"),
    "presence_leave": ("PresenceLeave", "A member left (rooms with presence events)"),
    "room_created": ("RoomCreated", "A room was created at runtime"),
    "room_deleted": ("RoomDeleted", "A room was deleted; its members were removed from it"),
    "error": ("ErrorFrame", "An error not tied to a command id (bad JSON, missing op)"),
    "disconnect": ("Disconnect", "Sent just before the server closes the connection"),
    "reply_ok": ("ReplyOk", "The answer to a command with an id that succeeded"),
    "reply_error": ("ReplyError", "The answer to a command with an id that failed"),
    "sse_hello": ("SseHello", "SSE: the first message (event: dialogue), hello plus positions"),
    "recover_failed": ("RecoverFailed", "SSE: a room could not be recovered from Last-Event-ID"),
}
