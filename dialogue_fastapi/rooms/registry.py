"""The room registry: rooms declared in config plus rooms created at runtime."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..core.config import RoomConfig
from ..core.errors import BadRequest, RoomNotFound
from ..core.events import EventDefinition
from ..core.families import FamilyPattern, is_family, parse_family


@dataclass(frozen=True, slots=True)
class Room:
    """A room: its id, its config, and who created it (None for config rooms). An instance
    of a room family also has its ``family`` (the pattern) and ``params``."""

    id: str
    config: RoomConfig
    created_by: str | None = None
    runtime: bool = False
    family: str | None = None
    params: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def info(self, size: int) -> dict[str, Any]:
        """The room info object of the protocol (section 4)."""
        config = self.config
        events = config.event_names()
        info: dict[str, Any] = {
            "id": self.id,
            "name": config.name,
            "description": config.description,
            "max_size": config.max_size,
            "size": size,
            "events": events,
            "default_subscriptions": (
                list(config.default_subscriptions)
                if config.default_subscriptions is not None else (events or ["*"])
            ),
            "channels": list(config.channels),
            "created_by": self.created_by,
        }
        if self.family is not None:
            info["family"], info["params"] = self.family, dict(self.params)
        return info


_INSTANCES_CACHED = 4096  # resolved family instances kept for the next look-up


class RoomRegistry:
    """Every room this node knows, by id: declared and runtime rooms, and the instances of
    room families (resolved from their pattern on use, never stored here for good)."""

    def __init__(self, declared: dict[str, RoomConfig]) -> None:
        self._rooms: dict[str, Room] = {
            room_id: Room(room_id, config)
            for room_id, config in declared.items() if not is_family(room_id)
        }
        self._families = [(parse_family(key), config)
                          for key, config in declared.items() if is_family(key)]
        self._instances: OrderedDict[str, Room] = OrderedDict()

    def get(self, room_id: str) -> Room:
        room = self.find(room_id, strict=True)
        if room is None:
            raise RoomNotFound(f"no room '{room_id}'")
        return room

    def find(self, room_id: str, *, strict: bool = False) -> Room | None:
        """The room of an id; ``strict``: an id of a family in the wrong order is a
        BAD_REQUEST naming the right one (else None)."""
        room = self._rooms.get(room_id) or self._instances.get(room_id)
        if room is not None or not self._families:
            return room
        for family, config in self._families:
            params = family.match(room_id)
            if params is None:
                continue
            canonical = _canonical(family, config, params)
            if canonical != room_id:
                if strict:
                    raise BadRequest(f"one pair is one room: use '{canonical}' (the members' "
                                     "parameters in ascending order)", room=canonical)
                return None
            room = Room(room_id, config, family=family.pattern, params=params)
            self._instances[room_id] = room
            if len(self._instances) > _INSTANCES_CACHED:
                self._instances.popitem(last=False)
            return room
        return None

    def forget(self, room_id: str) -> None:
        """Drop a resolved instance (it is resolved again on its next use)."""
        self._instances.pop(room_id, None)

    def families(self) -> list[Room]:
        """Each family as a room whose id is its pattern (for listings)."""
        return [Room(family.pattern, config, family=family.pattern)
                for family, config in self._families]

    def add(self, room: Room) -> None:
        self._rooms[room.id] = room

    def remove(self, room_id: str) -> Room | None:
        return self._rooms.pop(room_id, None)

    def all(self) -> list[Room]:
        return list(self._rooms.values())

    def __contains__(self, room_id: str) -> bool:
        """A declared or runtime room, or an id a family claims."""
        return room_id in self._rooms or any(f.match(room_id) for f, _ in self._families)


def room_spec(room: Room) -> dict[str, Any]:
    """The JSON form of a runtime room, for other nodes and the store."""
    config = room.config
    return {
        "id": room.id, "name": config.name, "description": config.description,
        "max_size": config.max_size, "events": config.event_names(),
        "default_subscriptions": config.default_subscriptions,
        "channels": list(config.channels), "presence_events": config.presence_events,
        "sync_history_on_join": config.sync_history_on_join, "created_by": room.created_by,
    }


def room_from_spec(spec: dict[str, Any], events: dict[str, EventDefinition]) -> Room:
    """Rebuild a runtime room from :func:`room_spec` (events found by name)."""
    config = RoomConfig(
        name=spec["name"], description=spec.get("description"),
        max_size=spec.get("max_size"),
        events=[events[name] for name in spec.get("events", []) if name in events],
        default_subscriptions=spec.get("default_subscriptions"),
        channels=spec.get("channels", ["websocket", "sse"]),
        presence_events=spec.get("presence_events", False),
        sync_history_on_join=spec.get("sync_history_on_join", False),
    )
    return Room(spec["id"], config, spec.get("created_by"), runtime=True)


def _canonical(family: FamilyPattern, config: RoomConfig, params: dict[str, str]) -> str:
    """The id with the members' parameters in ascending order (``dm:alice:bob``, never
    ``dm:bob:alice``): one pair of users is one room."""
    members = [m for m in family.params if m in (config.members or ())]
    if len(members) < 2:
        return _render(family, params)
    ordered = dict(params)
    for name, value in zip(members, sorted(params[m] for m in members), strict=True):
        ordered[name] = value
    return _render(family, ordered)


def _render(family: FamilyPattern, params: dict[str, str]) -> str:
    return ":".join(s.literal if s.literal is not None else params[s.param or ""]
                    for s in family.segments)
