"""Reaching users across the cluster: direct frames, forced disconnects, look-ups."""

from __future__ import annotations

import time
from typing import Any

from ..core.rules import check_event_name, check_payload, check_text
from ..runtime import Runtime


class Users:
    """The application's user operations; every node delivers to its own connections."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    async def send_to_user(self, user_id: str, event: str, data: Any, from_: str = "server") -> None:
        """A ``direct`` frame to every connection of the user, on every node."""
        check_text(user_id, "user id")
        check_event_name(event)
        config = self._rt.config
        check_payload(data, None, max_size=config.max_message_size, max_depth=config.max_json_depth)
        await self._rt.broker.control({
            "type": "direct", "user_id": user_id, "event": event, "data": data,
            "from": from_, "ts": int(time.time() * 1000),
        })

    async def disconnect_user(self, user_id: str, reason: str) -> None:
        """Close every connection of the user with 4004 (clients do not reconnect)."""
        check_text(user_id, "user id")
        await self._rt.broker.control(
            {"type": "disconnect_user", "user_id": user_id, "reason": reason[:120]})

    async def clients_of(self, user_id: str) -> list[str]:
        return await self._rt.broker.presence.clients_of(user_id)

    async def in_room(self, user_id: str, room_id: str) -> bool:
        members = await self._rt.broker.presence.members(room_id)
        return any(m.user_id == user_id for m in members)
