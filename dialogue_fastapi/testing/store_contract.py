"""The contract every EventStore passes (memory, SQL, yours).

Subclass and provide an async ``store`` fixture yielding a fresh, empty,
unstarted store.
"""

from __future__ import annotations

from ..stores.base import EventStore, HistoryQuery
from ..types import EventMessage


def _events(room: str, count: int, start: int = 1) -> list[EventMessage]:
    return [
        EventMessage(room=room, event="even" if n % 2 == 0 else "odd", data={"n": n},
                     from_="alice" if n % 3 else "bob", ts=1_000 + n, seq=n)
        for n in range(start, start + count)
    ]


class EventStoreContract:
    """Append, query pages and filters, read_after, delete_room."""

    async def test_append_and_read_after(self, store: EventStore) -> None:
        await store.start()
        try:
            await store.append(_events("s1", 10))
            got = await store.read_after("s1", 4, 3)
            assert [m.seq for m in got] == [5, 6, 7]
            assert got[0].data == {"n": 5} and got[0].from_ == "alice"
        finally:
            await store.stop()

    async def test_append_is_idempotent_per_seq(self, store: EventStore) -> None:
        await store.start()
        try:
            await store.append(_events("s2", 3))
            await store.append(_events("s2", 3))
            assert [m.seq for m in await store.read_after("s2", 0, 100)] == [1, 2, 3]
        finally:
            await store.stop()

    async def test_query_pages(self, store: EventStore) -> None:
        await store.start()
        try:
            await store.append(_events("s3", 20))
            newest = await store.query(HistoryQuery("s3", limit=5))
            assert [m.seq for m in newest] == [16, 17, 18, 19, 20]
            forward = await store.query(HistoryQuery("s3", limit=5, after=3))
            assert [m.seq for m in forward] == [4, 5, 6, 7, 8]
            backward = await store.query(HistoryQuery("s3", limit=3, before=10))
            assert [m.seq for m in backward] == [7, 8, 9]
        finally:
            await store.stop()

    async def test_query_filters(self, store: EventStore) -> None:
        await store.start()
        try:
            await store.append(_events("s4", 12))
            even = await store.query(HistoryQuery("s4", limit=100, event="even"))
            assert [m.seq for m in even] == [2, 4, 6, 8, 10, 12]
            bob = await store.query(HistoryQuery("s4", limit=100, sender="bob"))
            assert [m.seq for m in bob] == [3, 6, 9, 12]
            window = await store.query(HistoryQuery("s4", limit=100, since_ts=1_004, until_ts=1_006))
            assert [m.seq for m in window] == [4, 5, 6]
        finally:
            await store.stop()

    async def test_rooms_are_separate_and_deletable(self, store: EventStore) -> None:
        await store.start()
        try:
            await store.append(_events("s5", 3) + _events("s6", 2))
            await store.delete_room("s5")
            assert await store.read_after("s5", 0, 10) == []
            assert len(await store.read_after("s6", 0, 10)) == 2
        finally:
            await store.stop()
