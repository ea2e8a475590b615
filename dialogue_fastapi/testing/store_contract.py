"""The contract every EventStore passes (memory, SQLite, PostgreSQL, yours).

Subclass and provide an async ``store`` fixture yielding a fresh, empty,
unstarted store (a new database, schema or table prefix each time)::

    class TestMyStore(EventStoreContract):
        @pytest.fixture
        async def store(self):
            yield MyStore(...)

Tests of the optional capabilities (``RoomStore``, ``PrunableStore``,
``AuditStore``) are skipped for a store that does not implement them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..core.types import EventMessage, Position
from ..stores.base import (
    AuditQuery,
    AuditStore,
    EventStore,
    HistoryQuery,
    PrunableStore,
    Rejection,
    RoomStore,
)


def _events(room: str, count: int, start: int = 1) -> list[EventMessage]:
    return [
        EventMessage(room=room, event="even" if n % 2 == 0 else "odd", data={"n": n},
                     from_="alice" if n % 3 else "bob", ts=1_000 + n, seq=n)
        for n in range(start, start + count)
    ]


@contextlib.asynccontextmanager
async def running(store: EventStore) -> AsyncIterator[EventStore]:
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


def _seqs(messages: list[EventMessage]) -> list[int]:
    return [m.seq for m in messages]


class EventStoreContract:
    """Append, pages and filters, positions, deletion; rooms, state, retention, audit."""

    async def test_append_and_read_after(self, store: EventStore) -> None:
        async with running(store):
            await store.append(_events("s1", 10), {"s1": "e1"})
            got = await store.read_after("s1", 4, 3)
            assert _seqs(got) == [5, 6, 7]
            assert got[0].data == {"n": 5} and got[0].from_ == "alice"
            assert got[0].ts == 1_005 and got[0].event == "odd"

    async def test_append_is_idempotent_per_seq(self, store: EventStore) -> None:
        async with running(store):
            await store.append(_events("s2", 3), {"s2": "e"})
            await store.append(_events("s2", 5), {"s2": "e"})
            assert _seqs(await store.read_after("s2", 0, 100)) == [1, 2, 3, 4, 5]

    async def test_values_round_trip(self, store: EventStore) -> None:
        data = {"text": "héllo ✓ 𝄞", "nested": {"list": [1, 2.5, None, True]}, "empty": {}}
        messages = [
            EventMessage("s9", "m", data, "u:1", 5, 1, {"trace": "t"}, idempotency_key="k1"),
            EventMessage("s9", "m", None, "server", 6, 2),
            EventMessage("s9", "m", [1, "two"], "server", 7, 3),
        ]
        async with running(store):
            await store.append(messages, {"s9": "e"})
            got = await store.read_after("s9", 0, 10)
            assert [m.data for m in got] == [data, None, [1, "two"]]
            assert got[0].meta == {"trace": "t"} and got[1].meta == {}
            assert got[0].idempotency_key == "k1" and got[0].from_ == "u:1"

    async def test_a_large_batch_is_one_append(self, store: EventStore) -> None:
        async with running(store):
            await store.append(_events("big", 5_000), {"big": "e"})
            assert len(await store.read_after("big", 0, 10_000)) == 5_000
            assert (await store.positions())["big"].seq == 5_000

    async def test_query_pages(self, store: EventStore) -> None:
        async with running(store):
            await store.append(_events("s3", 20), {"s3": "e"})
            assert _seqs(await store.query(HistoryQuery("s3", limit=5))) == [16, 17, 18, 19, 20]
            assert _seqs(await store.query(HistoryQuery("s3", limit=5, after=3))) == [4, 5, 6, 7, 8]
            assert _seqs(await store.query(HistoryQuery("s3", limit=3, before=10))) == [7, 8, 9]
            assert _seqs(await store.query(HistoryQuery("s3", limit=10, after=3, before=7))) == [4, 5, 6]
            assert await store.query(HistoryQuery("s3", limit=0)) == []

    async def test_query_filters(self, store: EventStore) -> None:
        async with running(store):
            await store.append(_events("s4", 12), {"s4": "e"})
            even = await store.query(HistoryQuery("s4", limit=100, event="even"))
            assert _seqs(even) == [2, 4, 6, 8, 10, 12]
            bob = await store.query(HistoryQuery("s4", limit=100, sender="bob"))
            assert _seqs(bob) == [3, 6, 9, 12]
            window = await store.query(HistoryQuery("s4", limit=100, since_ts=1_004, until_ts=1_006))
            assert _seqs(window) == [4, 5, 6]
            only = await store.query(HistoryQuery("s4", limit=2, events=frozenset({"odd"})))
            assert _seqs(only) == [9, 11]
            never = await store.query(HistoryQuery("s4", limit=100, exclude_events=frozenset({"odd"}),
                                                   sender="bob", before=12))
            assert _seqs(never) == [6]

    async def test_positions_continue_after_a_restart(self, store: EventStore) -> None:
        async with running(store):
            await store.append(_events("p1", 7), {"p1": "epoch-a"})
            await store.append(_events("p2", 2), {"p2": "epoch-b"})
            await store.append(_events("p1", 3), {"p1": "epoch-a"})  # an older batch again
        async with running(store):
            positions = await store.positions()
            assert positions["p1"] == Position(7, "epoch-a")
            assert positions["p2"] == Position(2, "epoch-b")
            assert _seqs(await store.read_after("p1", 5, 10)) == [6, 7]

    async def test_rooms_are_separate_and_deletable(self, store: EventStore) -> None:
        async with running(store):
            await store.append(_events("s5", 3) + _events("s6", 2), {"s5": "e", "s6": "e"})
            await store.delete_room("s5")
            assert await store.read_after("s5", 0, 10) == []
            assert "s5" not in await store.positions()
            assert len(await store.read_after("s6", 0, 10)) == 2



class RoomStoreContract:
    """For stores that also implement ``RoomStore`` (runtime rooms, room state)."""

    async def test_runtime_rooms_and_state(self, store: EventStore) -> None:
        assert isinstance(store, RoomStore), "this store does not implement RoomStore"
        spec = {"id": "r1", "name": "R1", "events": ["m"], "created_by": "alice", "max_size": 3}
        async with running(store):
            await store.save_room("r1", spec)
            await store.set_state("r1", {"topic": "hi", "votes": [1, 2]})
            await store.set_state("config-room", 42)
            assert await store.get_state("nobody") is None
        async with running(store):
            assert (await store.load_rooms()) == {"r1": spec}  # config rooms have no spec
            assert await store.get_state("r1") == {"topic": "hi", "votes": [1, 2]}
            assert await store.get_state("config-room") == 42
            await store.delete_room("r1")
            assert await store.load_rooms() == {} and await store.get_state("r1") is None



class PrunableStoreContract:
    """For stores that also implement ``PrunableStore`` (retention)."""

    async def test_prune_by_count_and_age_in_bounded_steps(self, store: EventStore) -> None:
        assert isinstance(store, PrunableStore), "this store does not implement PrunableStore"
        async with running(store):
            await store.append(_events("q1", 30) + _events("q2", 10), {"q1": "e", "q2": "e"})
            assert await store.prune("q1", keep_last=10, older_than=None, limit=15) == 15
            assert await store.prune("q1", keep_last=10, older_than=None, limit=15) == 5
            assert await store.prune("q1", keep_last=10, older_than=None, limit=15) == 0
            assert _seqs(await store.read_after("q1", 0, 100)) == list(range(21, 31))
            assert await store.prune("q2", keep_last=None, older_than=1_004, limit=100) == 3
            assert _seqs(await store.read_after("q2", 0, 100)) == list(range(4, 11))
            assert (await store.positions())["q1"].seq == 30  # seq continues after pruning



class AuditStoreContract:
    """For stores that also implement ``AuditStore`` (rejections, audit queries)."""

    async def test_audit_trail(self, store: EventStore) -> None:
        assert isinstance(store, AuditStore), "this store does not implement AuditStore"
        async with running(store):
            await store.append(_events("a1", 4), {"a1": "e"})
            await store.record_rejections([
                Rejection("a1", "odd", "mallory", 1_500, "BLOCKED", "no", {"x": 1}),
                Rejection("a2", "m", "bob", 2_000, "VALIDATION_FAILED", "bad"),
            ])
            everything = await store.audit(AuditQuery())
            assert [(e.ts, e.accepted) for e in everything] == [
                (1_001, True), (1_002, True), (1_003, True), (1_004, True), (1_500, False),
                (2_000, False)]
            refused = await store.audit(AuditQuery(outcome="rejected", room="a1"))
            assert [(r.sender, r.code, r.reason, r.data) for r in refused] == [
                ("mallory", "BLOCKED", "no", {"x": 1})]
            bob = await store.audit(AuditQuery(sender="bob"))
            assert [(e.room, e.seq, e.accepted) for e in bob] == [("a1", 3, True), ("a2", None, False)]
            newest = await store.audit(AuditQuery(outcome="accepted", since_ts=1_002, limit=2))
            assert [e.seq for e in newest] == [3, 4]
            if isinstance(store, PrunableStore):
                assert await store.prune_rejections(1_600, 10) == 1
                assert [e.ts for e in await store.audit(AuditQuery(outcome="rejected"))] == [2_000]


class FullStoreContract(
    EventStoreContract, RoomStoreContract, PrunableStoreContract, AuditStoreContract
):
    """Everything the built-in stores implement: events, rooms, retention, audit."""
