"""The use-case layer: every operation once, for every front end.

WebSocket ops, REST routes, ``/sse`` and the ``Dialogue`` facade parse their
input, call one of these and encode the result; authorization, validation and
limits live here (and in the publish pipeline they call), so one input gets one
answer on every transport. See docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..runtime import Runtime
from .access import Access
from .caller import Caller
from .members import Members
from .publishing import Publishing
from .push import PushRegistrationUseCases
from .reading import Reading
from .requests import (
    CreateRoomRequest,
    HistoryRequest,
    JoinRequest,
    PublishRequest,
    PushRegistrationRequest,
)
from .room_admin import RoomAdministration
from .users import Users

__all__ = [
    "Caller", "CreateRoomRequest", "HistoryRequest", "JoinRequest", "PublishRequest",
    "PushRegistrationRequest", "UseCases",
]


@dataclass(frozen=True, slots=True)
class UseCases:
    """The operations, grouped by what they act on."""

    access: Access
    publishing: Publishing
    reading: Reading
    rooms: RoomAdministration
    members: Members
    users: Users
    push: PushRegistrationUseCases

    @classmethod
    def build(cls, rt: Runtime) -> UseCases:
        access = Access(rt)
        return cls(access, Publishing(rt, access), Reading(rt, access),
                   RoomAdministration(rt, access), Members(rt, access), Users(rt),
                   PushRegistrationUseCases(rt, access))
