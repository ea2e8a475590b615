"""Room state: one JSON value per room, set and read by the application.

With a store that keeps rooms (the SQL and memory stores do), the state is
written through the write-behind queue and ``set`` returns after the commit;
it survives restarts and is shared by every node on the same database.
Without one it lives in this process.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from ..core.errors import BadRequest
from ..stores.write_behind import WriteBehind


class RoomStates:
    """``set``/``get``/``forget`` the state of rooms."""

    def __init__(self, writer: WriteBehind | None) -> None:
        self._writer = writer if writer is not None and writer.rooms is not None else None
        self._local: dict[str, Any] = {}

    @property
    def persistent(self) -> bool:
        return self._writer is not None

    async def set(self, room: str, state: Any) -> None:
        try:
            orjson.dumps(state)
        except TypeError as exc:
            raise BadRequest(f"room state must be JSON: {exc}") from None
        if self._writer is not None:
            await self._writer.set_state(room, state)
        else:
            self._local[room] = copy.deepcopy(state)

    async def get(self, room: str) -> Any:
        if self._writer is not None:
            return await self._writer.get_state(room)
        return copy.deepcopy(self._local.get(room))

    def forget(self, room: str) -> None:
        self._local.pop(room, None)
