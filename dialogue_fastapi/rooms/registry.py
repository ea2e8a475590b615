"""The room registry: rooms declared in config plus rooms created at runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.config import RoomConfig
from ..core.errors import RoomNotFound
from ..core.events import EventDefinition


@dataclass(frozen=True, slots=True)
class Room:
    """A room: its id, its config, and who created it (None for config rooms)."""

    id: str
    config: RoomConfig
    created_by: str | None = None
    runtime: bool = False

    def info(self, size: int) -> dict[str, Any]:
        """The room info object of the protocol (section 4)."""
        config = self.config
        events = config.event_names()
        return {
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


class RoomRegistry:
    """Every room this node knows, by id."""

    def __init__(self, declared: dict[str, RoomConfig]) -> None:
        self._rooms: dict[str, Room] = {
            room_id: Room(room_id, config) for room_id, config in declared.items()
        }

    def get(self, room_id: str) -> Room:
        room = self._rooms.get(room_id)
        if room is None:
            raise RoomNotFound(f"no room '{room_id}'")
        return room

    def find(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    def add(self, room: Room) -> None:
        self._rooms[room.id] = room

    def remove(self, room_id: str) -> Room | None:
        return self._rooms.pop(room_id, None)

    def all(self) -> list[Room]:
        return list(self._rooms.values())

    def __contains__(self, room_id: str) -> bool:
        return room_id in self._rooms


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
