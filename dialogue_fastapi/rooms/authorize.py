"""Who may use an instance of a room family: ``members=`` and ``authorize=``.

Checked wherever a user reaches a room it has not joined (join on every
transport, REST and WebSocket reads, REST publishes), before the global
``before_join``. A plain room has neither and passes.
"""

from __future__ import annotations

from ..core.errors import DialogueError, Forbidden, Reject, error_for_code
from ..core.hooks import call_maybe_async
from ..core.types import Identity
from .registry import Room


async def authorize_instance(identity: Identity | None, room: Room) -> None:
    """FORBIDDEN unless the user is one of the instance's ``members`` parameters and the
    family's ``authorize(identity, room)`` returns True (anything else refuses)."""
    if room.family is None or identity is None:
        return
    config = room.config
    if config.members is not None and identity.user_id not in {
            room.params[name] for name in config.members}:
        raise Forbidden(f"room '{room.id}' is only for its members", reason="not a member")
    if config.authorize is None:
        return
    try:
        allowed = await call_maybe_async(config.authorize, identity, room)
    except Reject as exc:
        code = "FORBIDDEN" if exc.code in ("BLOCKED", "JOIN_DENIED") else exc.code
        raise error_for_code(code, exc.reason, reason=exc.reason) from None
    except DialogueError:
        raise
    if allowed is not True:
        raise Forbidden(f"access to room '{room.id}' was refused", reason="refused")
