"""Who may use a room: one rule for joins and for reads by non-members.

An instance of a room family first asks its ``members=`` and ``authorize=``
(refused: ``FORBIDDEN``), then every room asks the global ``before_join``
(refused: ``JOIN_DENIED`` for a join, ``FORBIDDEN`` for a read or a REST
publish). A ``Reject`` with a code of its own keeps that code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.errors import Reject, error_for_code
from ..core.hooks import call_maybe_async
from ..core.types import Identity
from .registry import Room

#: codes a Reject may carry that mean "refused", answered with the caller's own refusal code
_REFUSALS = ("BLOCKED", "JOIN_DENIED")


async def admit(
    identity: Identity | None, room: Room, before_join: Callable[..., Any] | None, *,
    refusal: str,
) -> None:
    """Raise ``refusal`` (a protocol code) unless the user may use ``room``."""
    if identity is None:
        return
    config = room.config
    if room.family is not None:
        if config.members is not None and identity.user_id not in {
                room.params[name] for name in config.members}:
            raise error_for_code("FORBIDDEN", f"room '{room.id}' is only for its members",
                                 reason="not a member")
        if config.authorize is not None:  # only True admits
            await _ask(config.authorize, identity, room, room.id, "FORBIDDEN", strict=True)
    if before_join is not None:  # only False refuses
        await _ask(before_join, identity, room.id, room.id, refusal, strict=False)


async def _ask(
    call: Callable[..., Any], identity: Identity, argument: Any, room_id: str, refusal: str, *,
    strict: bool,
) -> None:
    try:
        allowed = await call_maybe_async(call, identity, argument)
    except Reject as exc:
        code = refusal if exc.code in _REFUSALS else exc.code
        raise error_for_code(code, exc.reason, reason=exc.reason) from None
    if (allowed is not True) if strict else (allowed is False):
        what = "joining" if refusal == "JOIN_DENIED" else "access to room"
        raise error_for_code(refusal, f"{what} '{room_id}' was refused", reason="refused")
