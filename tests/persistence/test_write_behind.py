"""Write-behind: batching, the memory bound, retries while the store is down, durable acks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import pytest

from dialogue_fastapi import Dialogue, DialogueError, RoomConfig, define_event
from dialogue_fastapi.core.types import EventMessage
from dialogue_fastapi.stores import MemoryStore, PermanentStoreError

message = define_event("message", history=10)


class FlakyStore(MemoryStore):
    """A memory store that can be down, slow, or refuse some events as bad data."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.delay = 0.0
        self.refuse: set[int] = set()
        self.batches: list[int] = []

    async def append(self, messages: list[EventMessage], epochs: Mapping[str, str]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise ConnectionError("database unreachable")
        if any(m.seq in self.refuse for m in messages):
            raise PermanentStoreError("bad data")
        self.batches.append(len(messages))
        await super().append(messages, epochs)

    async def set_state(self, room: str, state: object) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise ConnectionError("database unreachable")
        await super().set_state(room, state)

    async def stored(self, room: str) -> list[int]:
        return [m.seq for m in await self.read_after(room, 0, 100_000)]


def make(store: FlakyStore, **settings: object) -> Dialogue:
    rooms = {"chat": RoomConfig(name="Chat", events=[message]),
             "safe": RoomConfig(name="Safe", events=[message], durable=True)}
    return Dialogue(rooms=rooms, allow_anonymous=True, persistence=store, **settings)


@pytest.fixture
async def store() -> AsyncIterator[FlakyStore]:
    yield FlakyStore()


async def wait_until(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.01)


async def test_events_are_written_in_batches_off_the_publish_path(store: FlakyStore) -> None:
    dialogue = make(store, write_batch_size=200, write_interval=0.05)
    await dialogue.start()
    store.delay = 0.05  # every write takes 50 ms
    try:
        started = asyncio.get_running_loop().time()
        for i in range(1000):
            await dialogue.trigger("chat", "message", {"n": i})
        assert asyncio.get_running_loop().time() - started < 1.0  # no publish waited for a write
        await dialogue.flush()
        assert await store.stored("chat") == list(range(1, 1001))
        assert len(store.batches) <= 10 and max(store.batches) <= 200
    finally:
        await dialogue.stop()


async def test_a_full_queue_refuses_before_publishing(store: FlakyStore) -> None:
    dialogue = make(store, write_max_pending=10)
    await dialogue.start()
    store.down = True
    try:
        for i in range(10):
            await dialogue.trigger("chat", "message", {"n": i})
        with pytest.raises(DialogueError) as refused:
            await dialogue.trigger("chat", "message", {"n": 10})
        assert refused.value.code == "UNAVAILABLE"
        assert (await dialogue.position("chat")).seq == 10  # the refused one was not published
        store.down = False
        await wait_until(lambda: _has(store, "chat", 10))
        assert (await dialogue.trigger("chat", "message", {"n": 11})).seq == 11
    finally:
        await dialogue.stop()
    assert await store.stored("chat") == list(range(1, 12))


async def _has(store: FlakyStore, room: str, count: int) -> bool:
    return len(await store.stored(room)) == count


async def test_everything_accepted_while_down_lands_once_back(store: FlakyStore) -> None:
    dialogue = make(store)
    await dialogue.start()
    writer = dialogue.runtime.writer
    assert writer is not None
    try:
        store.down = True
        seqs = [(await dialogue.trigger("chat", "message", {"n": i})).seq for i in range(50)]
        await wait_until(lambda: _true(writer.failing))
        assert await store.stored("chat") == []
        page = await dialogue.history("chat", limit=100)  # reads include the queue
        assert [m.seq for m in page] == seqs
        store.down = False
        await wait_until(lambda: _has(store, "chat", 50))
        assert await store.stored("chat") == seqs and not writer.failing
    finally:
        await dialogue.stop()


async def _true(value: bool) -> bool:
    return value


async def test_durable_publishes_ack_after_the_commit(store: FlakyStore) -> None:
    dialogue = make(store, write_interval=5.0)  # a partial batch would wait 5 s
    await dialogue.start()
    try:
        stored = await dialogue.trigger("safe", "message", {"n": 1})
        assert await store.stored("safe") == [stored.seq]  # in the store when the ack comes
        await dialogue.trigger("chat", "message", {"n": 1})  # not durable: queued
        assert await store.stored("chat") == []
        global_durable = make(FlakyStore(), durable=True)
        assert global_durable.runtime.publisher.durable(global_durable.room("chat"))
    finally:
        await dialogue.stop()


async def test_durable_publishes_are_refused_while_the_store_is_down(store: FlakyStore) -> None:
    dialogue = make(store, durable_timeout=0.3)
    await dialogue.start()
    try:
        store.delay = 1.0  # slow: the commit outlasts the durable timeout
        with pytest.raises(DialogueError) as slow:
            await dialogue.trigger("safe", "message", {"n": 1})
        assert slow.value.code == "UNAVAILABLE" and "not stored yet" in slow.value.message
        store.delay, store.down = 0.0, True
        await wait_until(lambda: _true(dialogue.runtime.writer.failing))  # type: ignore[union-attr]
        position = await dialogue.position("safe")
        with pytest.raises(DialogueError) as down:
            await dialogue.trigger("safe", "message", {"n": 2})
        assert down.value.code == "UNAVAILABLE"
        assert await dialogue.position("safe") == position  # refused before publishing
        store.down = False
        await wait_until(lambda: _has(store, "safe", 1))  # the slow one landed: nothing lost
    finally:
        await dialogue.stop()


async def test_a_bad_event_is_dropped_alone(store: FlakyStore) -> None:
    dialogue = make(store, write_interval=0.2)
    await dialogue.start()
    store.refuse = {7}
    try:
        for i in range(20):
            await dialogue.trigger("chat", "message", {"n": i})
        await dialogue.flush()
        assert await store.stored("chat") == [s for s in range(1, 21) if s != 7]
        assert dialogue.runtime.writer.dropped == 1  # type: ignore[union-attr]
    finally:
        await dialogue.stop()


async def test_a_deleted_room_is_not_resurrected_by_queued_events(store: FlakyStore) -> None:
    dialogue = make(store)
    await dialogue.start()
    try:
        await dialogue.create_room("tmp", RoomConfig(name="Tmp", events=[message]))
        await dialogue.flush()
        store.down = True
        for i in range(5):
            await dialogue.trigger("tmp", "message", {"n": i})
        await dialogue.delete_room("tmp")
        await dialogue.create_room("tmp", RoomConfig(name="Tmp again", events=[message]))
        fresh = await dialogue.trigger("tmp", "message", {"n": "new"})
        store.down = False
        await dialogue.flush()
        assert fresh.seq == 1
        assert [m.data for m in await store.read_after("tmp", 0, 10)] == [{"n": "new"}]
        assert (await store.load_rooms())["tmp"]["name"] == "Tmp again"
    finally:
        await dialogue.stop()


async def test_stop_flushes_the_queue(store: FlakyStore) -> None:
    dialogue = make(store, write_interval=30.0, write_batch_size=10_000)
    await dialogue.start()
    for i in range(300):
        await dialogue.trigger("chat", "message", {"n": i})
    assert await store.stored("chat") == []
    await dialogue.stop()
    assert await store.stored("chat") == list(range(1, 301))


async def test_publishing_before_the_first_start_is_refused(store: FlakyStore) -> None:
    dialogue = make(store)
    with pytest.raises(DialogueError) as refused:
        await dialogue.trigger("chat", "message", {"n": 1})
    assert refused.value.code == "UNAVAILABLE" and "start the Dialogue" in refused.value.message
