"""Bounded label values: the ``room`` and ``event`` labels can never grow without limit.

A room's label is its id when it was declared in config, its family's pattern
for an instance of a room family (``dm:{a}:{b}``, never ``dm:alice:bob``),
and one group for runtime rooms (``"runtime"``, or what the application's
``room_label(room)`` returns). Whatever the values, at most
``max_label_values`` distinct ones are ever exported per label; later ones
fold into ``"_other"``. (Mercure's per-topic label reached 20k lines and 2 MB
of scrape; Centrifugo labels by namespace, never by channel.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.metrics import LabelledRoom

OTHER = "_other"
_MEMO_MAX = 50_000  # room ids whose label is remembered (cleared, not grown, past this)


class BoundedValues:
    """Values of one label: the first ``cap`` distinct ones pass, the rest are ``"_other"``."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        seen = self._seen
        if value in seen:
            return value
        if len(seen) >= self._cap:
            return OTHER
        seen.add(value)
        return value


class RoomLabels:
    """The ``room`` label of a room (declared id, family pattern, or runtime group), capped."""

    def __init__(self, cap: int, runtime_label: str, room_label: Callable[..., str] | None) -> None:
        self._values = BoundedValues(cap)
        self._runtime, self._custom = runtime_label, room_label
        self._memo: dict[str, str] = {}

    def __call__(self, room: LabelledRoom) -> str:
        label = self._memo.get(room.id)
        if label is not None:
            return label
        if room.family is not None:
            label = room.family
        elif room.runtime:
            label = self._runtime if self._custom is None else self._grouped(room)
        else:
            label = room.id
        label = self._values(label)
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[room.id] = label
        return label

    def _grouped(self, room: Any) -> str:
        label = self._custom(room) if self._custom is not None else self._runtime
        return label if isinstance(label, str) and label else self._runtime
