"""The push outbox: room-event notifications waiting for their grace period, then being sent.

One row per event (``(room, seq)`` is unique), written by the node that published the
event. A dispatcher on every node :meth:`~PushOutbox.claim`\\ s due rows with a lease (two
nodes never hold the same row; a dead node's rows are claimed again when its lease runs
out), records each device it is done with (:meth:`~PushOutbox.mark_sent`: a restart does
not send twice to a device), and :meth:`~PushOutbox.finish`\\ es a row once every device is
done. The SQL form is ``stores/sql_push_outbox.py``; :class:`MemoryOutbox` serves an app
without persistence (rows are lost on restart).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One event's notification; ``id`` is 0 until stored."""

    room: str
    seq: int
    event: str
    sender: str
    notification: dict[str, Any]
    due_at: int  # ms since the epoch: the event's ts plus the grace period
    id: int = 0
    attempts: int = 0
    claimed_until: int | None = field(default=None, compare=False)
    claimed_by: str | None = field(default=None, compare=False)  # the claim's token


class PushOutbox(Protocol):
    """Where notifications wait (memory, or the SQL store's ``push_outbox``)."""

    async def add(self, entries: Sequence[OutboxEntry]) -> None:
        """Store new rows (a repeated ``(room, seq)`` is ignored)."""
        ...

    async def claim(self, owner: str, now: int, horizon: int, lease: int,
                    limit: int) -> list[OutboxEntry]:
        """Claim unclaimed (or lease-expired) rows due by ``now``, and the rows of the same rooms
        due by ``now + horizon`` (they collapse with them), for ``lease`` ms; ascending seq."""
        ...

    async def renew(self, ids: Collection[int], token: str, until: int) -> None:
        """Extend the lease to ``until`` on those of the rows the claim ``token`` still holds."""
        ...

    async def sent_to(self, ids: Collection[int]) -> dict[int, set[str]]:
        """The registrations each row is already done with."""
        ...

    async def mark_sent(self, ids: Collection[int], registration_id: str, now: int) -> None:
        """Record that these rows are done for this registration."""
        ...

    async def release(self, ids: Collection[int], due_at: int) -> None:
        """Give rows back, due again at ``due_at`` (a device over its rate waits)."""
        ...

    async def finish(self, ids: Collection[int]) -> None:
        """Delete rows every device is done with."""
        ...

    async def pending(self) -> int:
        """Rows waiting or in flight."""
        ...


class MemoryOutbox:
    """:class:`PushOutbox` in a dict: one node, lost on restart."""

    def __init__(self) -> None:
        self._rows: dict[int, OutboxEntry] = {}
        self._keys: set[tuple[str, int]] = set()
        self._sent: dict[int, set[str]] = {}
        self._ids = itertools.count(1)

    async def add(self, entries: Sequence[OutboxEntry]) -> None:
        for entry in entries:
            if (entry.room, entry.seq) in self._keys:
                continue
            row = replace(entry, id=next(self._ids))
            self._rows[row.id] = row
            self._keys.add((row.room, row.seq))

    async def claim(self, owner: str, now: int, horizon: int, lease: int,
                    limit: int) -> list[OutboxEntry]:
        free = [r for r in self._rows.values() if r.claimed_until is None or r.claimed_until < now]
        rooms = {r.room for r in free if r.due_at <= now}
        chosen = sorted((r for r in free if r.room in rooms and r.due_at <= now + horizon),
                        key=lambda r: (r.due_at, r.seq))[:limit]
        token = f"{owner}:{next(self._ids)}"
        for row in chosen:
            self._rows[row.id] = replace(row, claimed_until=now + lease, claimed_by=token,
                                         attempts=row.attempts + 1)
        return sorted((self._rows[r.id] for r in chosen), key=lambda r: (r.room, r.seq))

    async def renew(self, ids: Collection[int], token: str, until: int) -> None:
        for i in ids:
            row = self._rows.get(i)
            if row is not None and row.claimed_by == token:
                self._rows[i] = replace(row, claimed_until=until)

    async def sent_to(self, ids: Collection[int]) -> dict[int, set[str]]:
        return {i: set(self._sent.get(i, ())) for i in ids}

    async def mark_sent(self, ids: Collection[int], registration_id: str, now: int) -> None:
        for i in ids:
            if i in self._rows:
                self._sent.setdefault(i, set()).add(registration_id)

    async def release(self, ids: Collection[int], due_at: int) -> None:
        for i in ids:
            row = self._rows.get(i)
            if row is not None:
                self._rows[i] = replace(row, claimed_until=None, claimed_by=None, due_at=due_at)

    async def finish(self, ids: Collection[int]) -> None:
        for i in ids:
            row = self._rows.pop(i, None)
            self._sent.pop(i, None)
            if row is not None:
                self._keys.discard((row.room, row.seq))

    async def pending(self) -> int:
        return len(self._rows)
