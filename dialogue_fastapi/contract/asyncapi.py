"""``GET /asyncapi.json``: an AsyncAPI 3.0 document of the protocol as configured.

Built from the operation table (:data:`~dialogue_fastapi.commands.OPERATIONS`),
the error codes, the server's own frames and the rooms this node has now, with
each event's pydantic schema as the envelope's ``data``. Two channels: the
WebSocket (``/ws``, every command is a ``send`` operation answered by a reply)
and ``/sse`` (``receive`` only). Channel addresses are relative to the servers,
whose ``pathname`` is where the router is mounted, as the request reached it.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from pydantic import PydanticUserError
from pydantic_core import PydanticOmit

from ..core.events import EventDefinition
from ..rooms.registry import Room
from ..websocket.commands import OPERATIONS
from .frames import SERVER_FRAMES, SchemaBag, envelope, fixed_schemas, ref, safe_key

WS, SSE = "websocket", "sse"
_CORRELATION = {"location": "$message.payload#/id",
                "description": "a command with an integer id gets exactly one reply with that id"}
#: the server's frames on each channel, with their receive operations
_WS_RECEIVE = {
    "receive.hello": ["hello"], "receive.direct": ["direct"],
    "receive.presence": ["presence_join", "presence_leave"],
    "receive.room_created": ["room_created"], "receive.room_deleted": ["room_deleted"],
    "receive.error": ["error"], "receive.disconnect": ["disconnect"],
}
_SSE_DIALOGUE = ["sse_hello", "recover_failed", "presence_join", "presence_leave", "direct",
                 "room_deleted", "disconnect"]


def _version() -> str:
    try:
        return importlib.metadata.version("dialogue-fastapi")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "0"


def _msg_ref(channel: str, key: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{channel}/messages/{key}"}


def _component(key: str) -> dict[str, str]:
    return {"$ref": f"#/components/messages/{key}"}


class _Builder:
    """One document: the schema bag, the messages and which channel carries which."""

    def __init__(self) -> None:
        self.bag = SchemaBag()
        self.bag.schemas.update(fixed_schemas())
        self.messages: dict[str, Any] = {}
        self.channel_messages: dict[str, list[str]] = {WS: [], SSE: []}
        self._data: dict[int, dict[str, Any]] = {}  # EventDefinition id -> data schema

    def message(self, key: str, body: dict[str, Any], *channels: str) -> str:
        base = key = safe_key(key)
        number = 1
        while key in self.messages:  # names that differ only in unsafe characters
            number += 1
            key = f"{base}_{number}"
        self.messages[key] = body
        for channel in channels:
            self.channel_messages[channel].append(key)
        return key

    def commands(self) -> dict[str, Any]:
        operations: dict[str, Any] = {}
        for op, (model, summary) in OPERATIONS.items():
            schema = self.bag.inline(model.model_json_schema())
            props = {"op": {"type": "string", "const": op},
                     "id": {"type": "integer", "description": "ask for a reply with this id"},
                     **schema.get("properties", {})}
            title = "".join(part.title() for part in op.split("_")) + "Command"
            schema = {**schema, "title": title, "properties": props,
                      "required": ["op", *schema.get("required", [])]}
            key = self.message(f"command.{op}", {
                "name": op, "title": title, "summary": summary,
                "payload": ref(self.bag.add(title, schema)), "correlationId": _CORRELATION,
            }, WS)
            operations[op] = {
                "action": "send", "channel": {"$ref": f"#/channels/{WS}"}, "summary": summary,
                "messages": [_msg_ref(WS, key)],
                "reply": {"channel": {"$ref": f"#/channels/{WS}"},
                          "messages": [_msg_ref(WS, "reply_ok"), _msg_ref(WS, "reply_error")]},
            }
        return operations

    def frames(self) -> None:
        sse_only = {"sse_hello", "recover_failed"}
        for key, (schema, summary) in SERVER_FRAMES.items():
            body: dict[str, Any] = {"name": key, "summary": summary, "payload": ref(schema)}
            if key.startswith("reply_"):
                body["correlationId"] = _CORRELATION
            channels = [c for c, on in ((WS, key not in sse_only), (SSE, key in _SSE_DIALOGUE)) if on]
            self.message(key, body, *channels)

    def data_schema(self, definition: EventDefinition) -> dict[str, Any]:
        found = self._data.get(id(definition))
        if found is None:
            try:
                found = self.bag.inline(definition.json_schema())
            except (PydanticUserError, PydanticOmit) as exc:  # a type with no JSON Schema
                found = {"description": f"no JSON Schema for this event's data: {exc}"}
            self._data[id(definition)] = found
        return found

    def rooms(self, rooms: Sequence[Room]) -> list[str]:
        """One message per event of each room (one for any event where the room lists none)."""
        keys = [self.message("event", {
            "name": "event", "title": "An event of any room",
            "summary": "The envelope of any event, also of rooms created after this document",
            "payload": ref("EventEnvelope"),
        }, WS, SSE)]
        for room in rooms:
            channels = [c for c in (WS, SSE) if c in room.config.channels]
            for definition in room.config.events:
                keys.append(self.message(f"event.{room.id}.{definition.name}", {
                    "name": definition.name, "title": f"{definition.name} in {room.id}",
                    "summary": definition.description or f"Event '{definition.name}' of room "
                    f"'{room.id}' ({room.config.name})",
                    "payload": envelope(room.id, definition.name, self.data_schema(definition)),
                }, *channels))
            if not room.config.events:
                keys.append(self.message(f"event.{room.id}", {
                    "name": "*", "title": f"any event in {room.id}",
                    "summary": f"Room '{room.id}' ({room.config.name}) accepts any event name; "
                    "data is any JSON",
                    "payload": envelope(room.id, None, {}),
                }, *channels))
        return keys


def build_document(rooms: Sequence[Room], *, scheme: str, host: str, base: str) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for these rooms, served at ``scheme://host{base}``."""
    builder = _Builder()
    operations = builder.commands()
    builder.frames()
    events = builder.rooms(rooms)
    secure = scheme in ("https", "wss")
    pathname = {"pathname": base} if base else {}
    servers = {
        WS: {"host": host, "protocol": "wss" if secure else "ws", **pathname,
             "description": "the WebSocket endpoint; the path is where the router is mounted"},
        "http": {"host": host, "protocol": "https" if secure else "http", **pathname,
                 "description": "Server-Sent Events and REST (REST is described by OpenAPI)"},
    }
    for op_id, keys in _WS_RECEIVE.items():
        operations[op_id] = {"action": "receive", "channel": {"$ref": f"#/channels/{WS}"},
                             "summary": builder.messages[keys[0]]["summary"],
                             "messages": [_msg_ref(WS, key) for key in keys]}
    ws_events = [k for k in events if k in builder.channel_messages[WS]]
    sse_events = [k for k in events if k in builder.channel_messages[SSE]]
    operations["receive.event"] = {
        "action": "receive", "channel": {"$ref": f"#/channels/{WS}"},
        "summary": "Events of the rooms the connection joined, filtered by its subscriptions",
        "messages": [_msg_ref(WS, key) for key in ws_events]}
    operations["sse.receive.event"] = {
        "action": "receive", "channel": {"$ref": f"#/channels/{SSE}"},
        "summary": "Room events: SSE 'id:' is the cursor, 'event:' the event name, "
                   "'data:' the envelope",
        "messages": [_msg_ref(SSE, key) for key in sse_events]}
    operations["sse.receive.dialogue"] = {
        "action": "receive", "channel": {"$ref": f"#/channels/{SSE}"},
        "summary": "Stream control messages, sent as SSE 'event: dialogue'",
        "messages": [_msg_ref(SSE, key) for key in _SSE_DIALOGUE]}
    channels = {
        WS: {"address": "/ws", "title": "WebSocket", "servers": [{"$ref": f"#/servers/{WS}"}],
             "description": "Protocol v1 over one WebSocket: JSON commands with 'op' and an "
                            "optional integer 'id'; the server answers each id once.",
             "messages": {k: _component(k) for k in builder.channel_messages[WS]}},
        SSE: {"address": "/sse", "title": "Server-Sent Events", "servers": [{"$ref": "#/servers/http"}],
              "description": "GET /sse?room=a&room=b (optional events=a,b and last_event_id); "
                             "resumes from the Last-Event-ID header. Only rooms whose channels "
                             "include 'sse'.",
              "messages": {k: _component(k) for k in builder.channel_messages[SSE]}},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "dialogue-fastapi", "version": _version(),
                 "description": "Rooms and typed events over WebSocket and SSE (protocol v1). "
                                "Channel addresses are relative to the servers' pathname, "
                                "where the router is mounted."},
        "x-dialogue-protocol": 1,
        "defaultContentType": "application/json",
        "servers": servers,
        "channels": channels,
        "operations": operations,
        "components": {"schemas": builder.bag.schemas, "messages": builder.messages},
    }


class AsyncApiCache:
    """The document of one router, as JSON bytes; rebuilt when its rooms change."""

    MAX_ENTRIES = 16  # per (scheme, host, base); Host headers are the client's to choose

    def __init__(self, rooms: Callable[[], list[Room]]) -> None:
        self._rooms = rooms
        self._seen: list[Room] = []
        self._bodies: dict[tuple[str, str, str], bytes] = {}

    def render(self, scheme: str, host: str, base: str) -> bytes:
        rooms = self._rooms()
        if len(rooms) != len(self._seen) or any(a is not b for a, b in zip(rooms, self._seen, strict=True)):
            self._bodies.clear()
            self._seen = rooms
        key = (scheme, host, base)
        body = self._bodies.get(key)
        if body is None:
            if len(self._bodies) >= self.MAX_ENTRIES:
                self._bodies.clear()
            body = orjson.dumps(build_document(rooms, scheme=scheme, host=host, base=base))
            self._bodies[key] = body
        return body
