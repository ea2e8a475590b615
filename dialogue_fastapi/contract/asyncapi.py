"""``GET /asyncapi.json``: an AsyncAPI 3.0 document of the protocol as configured.

Built from the operation table (:data:`~dialogue_fastapi.commands.OPERATIONS`),
the error codes, the server's own frames and the rooms this node has now, with
each event's pydantic schema as the envelope's ``data``. Two channels: the
WebSocket (``/ws``, every command is a ``send`` operation answered by a reply)
and ``/sse`` (``receive`` only). Channel addresses are relative to the servers,
whose ``pathname`` is where the router is mounted, as the request reached it.

Each room family is one more channel whose ``address`` is its pattern
(``dm:{a}:{b}``, a room id rather than a path) with a Parameter Object per
parameter; its events are on the WebSocket and SSE channels like any room's
(the envelope's ``room`` is a ``pattern``), and on its own channel. Instances
never appear: the document is the same before and after ``dm:alice:bob`` is used.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from pydantic import PydanticUserError
from pydantic_core import PydanticOmit

from ..core.events import EventDefinition
from ..core.families import FamilyPattern, Segment, parse_family
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


#: a parameter's values as an ECMA-262 pattern (the alphabet of core.families)
_VALUE = {"int": "[0-9]+", "str": "[A-Za-z0-9_.@-]+"}
_KIND = {"int": "digits only",
         "str": "one or more of the room-id characters A-Za-z0-9_.@- (no ':')"}
_MEMBER_EXAMPLES = ("alice", "bob", "carol", "dave", "erin", "frank")


def _version() -> str:
    try:
        return importlib.metadata.version("dialogue-fastapi")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "0"


def _msg_ref(channel: str, key: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{channel}/messages/{key}"}


def _component(key: str) -> dict[str, str]:
    return {"$ref": f"#/components/messages/{key}"}


def _parameter(segment: Segment, members: list[str]) -> dict[str, Any]:
    """The Parameter Object of one parameter of a family (AsyncAPI 3.0: no schema; a
    description and examples)."""
    name = segment.param or ""
    parts = []
    if name in members:
        others = [m for m in members if m != name]
        parts.append("a user id: only that user " + (
            f"(and the other member{'s' if len(others) > 1 else ''}, {', '.join(others)}) "
            if others else "") + "may join")
        position = members.index(name)
        if segment.kind == "int":
            example = str(position + 1)
        else:
            example = _MEMBER_EXAMPLES[position] if position < len(_MEMBER_EXAMPLES) else f"user{position}"
    else:
        example = "42" if segment.kind == "int" else f"my-{name}"
    parts.append(_KIND[segment.kind])
    if len(members) > 1 and name in members:
        parts.append(f"the values of {', '.join(members)} are in ascending order in the id "
                     "(one room per set of members)")
    return {"description": "; ".join(parts), "examples": [example]}


class _Builder:
    """One document: the schema bag, the messages and which channel carries which."""

    def __init__(self) -> None:
        self.bag = SchemaBag()
        self.bag.schemas.update(fixed_schemas())
        self.messages: dict[str, Any] = {}
        self.channel_messages: dict[str, list[str]] = {WS: [], SSE: []}
        self._data: dict[int, dict[str, Any]] = {}  # EventDefinition id -> data schema
        self.families: dict[str, dict[str, Any]] = {}  # channel key -> channel, without messages
        self.family_ops: dict[str, str] = {}  # channel key -> its receive operation's summary

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
        """One message per event of each room (one for any event where the room lists none);
        a room family (a room with ``family``) once, with its own channel."""
        keys = [self.message("event", {
            "name": "event", "title": "An event of any room",
            "summary": "The envelope of any event, also of rooms created after this document",
            "payload": ref("EventEnvelope"),
        }, WS, SSE)]
        patterns: set[str] = set()
        for room in rooms:
            channels = [c for c in (WS, SSE) if c in room.config.channels]
            if room.family is None:
                keys += self.room_events(room, room.id, room.id, channels)
            elif room.family not in patterns:  # an instance counts as its family
                patterns.add(room.family)
                keys += self.family(room, parse_family(room.family), channels)
        return keys

    def room_events(self, room: Room, key: str, room_schema: str | dict[str, Any],
                    channels: Sequence[str]) -> list[str]:
        """The messages of a room's (or a family's) events; ``key`` names them."""
        config, kind = room.config, "family" if room.family is not None else "room"
        label = room.family or room.id
        keys = []
        for definition in config.events:
            keys.append(self.message(f"event.{key}.{definition.name}", {
                "name": definition.name, "title": f"{definition.name} in {label}",
                "summary": definition.description or f"Event '{definition.name}' of {kind} "
                f"'{label}' ({config.name})",
                "payload": envelope(room_schema, definition.name, self.data_schema(definition)),
            }, *channels))
        if not config.events:
            keys.append(self.message(f"event.{key}", {
                "name": "*", "title": f"any event in {label}",
                "summary": f"{kind.title()} '{label}' ({config.name}) accepts any event name; "
                "data is any JSON",
                "payload": envelope(room_schema, None, {}),
            }, *channels))
        return keys

    def family(self, room: Room, family: FamilyPattern, channels: Sequence[str]) -> list[str]:
        """A room family: a channel addressed by its pattern, with a Parameter Object per
        parameter, and the messages of its events (on ``channels`` and on its own)."""
        members = [p for p in family.params if p in (room.config.members or ())]
        base = key = safe_key("family." + ".".join(s.literal or s.param or "" for s in family.segments))
        number = 1
        while key in self.channel_messages:
            number += 1
            key = f"{base}_{number}"
        self.channel_messages[key] = []
        parameters = {s.param: _parameter(s, members) for s in family.segments if s.param}
        example = ":".join(s.literal or parameters[s.param or ""]["examples"][0]
                           for s in family.segments)
        room_schema = {
            "type": "string", "description": f"an id of the room family '{family.pattern}'",
            "pattern": "^" + ":".join(_VALUE[s.kind] if s.param else (s.literal or "").replace(".", r"\.")
                                      for s in family.segments) + "$",
            "examples": [example],
        }
        keys = self.room_events(room, key, room_schema, [*channels, key])
        where = " or ".join({WS: "the WebSocket (op 'join', 'room')", SSE: "/sse (?room=)"}[c]
                            for c in channels) or "no transport"
        description = (f"Room family: one room per id matching '{family.pattern}', e.g. "
                       f"'{example}'. The address is a room id, not a path: join an id over "
                       f"{where}; an instance exists as soon as it is used and is never listed.")
        if members:
            description += f" Only the users named by {', '.join(members)} may join."
        if room.config.authorize is not None:
            description += " The application authorizes each join (authorize=)."
        transports = " or ".join({WS: "WebSocket", SSE: "SSE"}[c] for c in channels)
        self.family_ops[key] = (f"Events of a room of the family '{family.pattern}', once joined "
                                f"(delivered on the {transports or 'no'} channel)")
        self.families[key] = {
            # AsyncAPI's address expressions are {name}: the int kind is in the parameter
            "address": ":".join(s.literal or f"{{{s.param}}}" for s in family.segments),
            "title": room.config.name,
            **({"summary": room.config.description} if room.config.description else {}),
            "description": description, "parameters": parameters,
            "servers": [{"$ref": f"#/servers/{'websocket' if c == WS else 'http'}"} for c in channels],
            "x-dialogue-family": family.pattern,
        }
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
    for key, channel in builder.families.items():
        channels[key] = {**channel, "messages": {k: _component(k) for k in builder.channel_messages[key]}}
        operations[f"receive.{key}"] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{key}"},
            "summary": builder.family_ops[key],
            "messages": [_msg_ref(key, k) for k in builder.channel_messages[key]]}
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


def _same(a: Room, b: Room) -> bool:
    """Whether two rooms give the same part of the document (families are rebuilt as new
    Room objects at each look-up, around the same config)."""
    return a is b or (a.id == b.id and a.config is b.config and a.family == b.family)


class AsyncApiCache:
    """The document of one router, as JSON bytes; rebuilt when its rooms change.

    ``rooms`` gives the config and runtime rooms, ``families`` the room families (rooms
    whose id is their pattern)."""

    MAX_ENTRIES = 16  # per (scheme, host, base); Host headers are the client's to choose

    def __init__(self, rooms: Callable[[], list[Room]],
                 families: Callable[[], list[Room]] | None = None) -> None:
        self._rooms = rooms
        self._families: Callable[[], list[Room]] = families or list
        self._seen: list[Room] = []
        self._bodies: dict[tuple[str, str, str], bytes] = {}

    def render(self, scheme: str, host: str, base: str) -> bytes:
        rooms = [*self._rooms(), *self._families()]
        if len(rooms) != len(self._seen) or not all(map(_same, rooms, self._seen)):
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
