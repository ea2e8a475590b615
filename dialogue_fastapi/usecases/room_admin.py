"""Creating and deleting rooms at runtime, by clients and by the application."""

from __future__ import annotations

from ..core.config import RoomConfig
from ..core.errors import Forbidden
from ..rooms.registry import Room
from ..runtime import Runtime
from .access import Access
from .caller import Caller
from .requests import CreateRoomRequest


class RoomAdministration:
    """A client's ``create_room`` is limited the same on every transport: the
    ``RateLimit(http={"create_room": ...})`` budget (REST counts it in the route,
    a WebSocket command here) and ``max_rooms_per_user`` runtime rooms owned."""

    def __init__(self, rt: Runtime, access: Access) -> None:
        self._rt = rt
        self._access = access

    async def create(self, caller: Caller, request: CreateRoomRequest) -> Room:
        rt = self._rt
        user = caller.user_id
        # every attempt counts, as the REST route's limit (which runs before the body is
        # looked at) counts it
        if caller.transport != "rest" and rt.http_limits is not None:
            await rt.http_limits.count("create_room", user, caller.ip)
        if not rt.config.allow_client_rooms:
            raise Forbidden("clients may not create rooms on this server")
        config = rt.admin.config_from_client(
            request.name, request.description, request.max_size, request.events,
            presence_events=request.presence_events,
            sync_history_on_join=request.sync_history_on_join,
        )
        most = rt.config.max_rooms_per_user
        owned = sum(1 for room in rt.registry.all() if room.runtime and room.created_by == user)
        if owned >= most:
            raise Forbidden(f"you already own {owned} rooms; the limit is {most} "
                            "(delete one first)", limit=most)
        return await rt.admin.create(request.room, config, created_by=user)

    async def create_as_server(
        self, room_id: str, config: RoomConfig, created_by: str | None = None
    ) -> Room:
        """The application's room: any config, no limits."""
        return await self._rt.admin.create(room_id, config, created_by)  # checks the id

    async def delete(self, caller: Caller, room_id: str) -> None:
        """Clients delete only runtime rooms they created; the application any room."""
        room = self._access.room(room_id)
        await self._rt.admin.delete(room.id, by=None if caller.is_server else caller.identity)
