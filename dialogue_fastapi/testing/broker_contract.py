"""The contract every Broker passes (memory, Redis, yours).

Subclass in a test module and provide an async ``broker`` fixture that
yields a fresh, unstarted broker::

    class TestMyBroker(BrokerContract):
        @pytest.fixture
        async def broker(self):
            yield MyBroker(...)
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..brokers.base import Broker
from ..core.types import EventMessage, Position, PresenceEntry


class RecordingSink:
    """A broker's sink for tests: records events and control frames."""

    def __init__(self) -> None:
        self.events: list[EventMessage] = []
        self.controls: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def on_event(self, message: EventMessage) -> int:
        self.events.append(message)
        self.arrived.set()
        return 1

    async def on_control(self, frame: dict[str, Any]) -> None:
        self.controls.append(frame)
        self.arrived.set()

    async def wait_events(self, count: int, timeout: float = 5.0) -> list[EventMessage]:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events


def _msg(room: str, n: int, key: str | None = None) -> EventMessage:
    return EventMessage(room=room, event="e", data={"n": n}, from_="u", idempotency_key=key)


class BrokerContract:
    """Positions, hot window, fan-out, idempotency and presence."""

    async def _started(self, broker: Broker) -> RecordingSink:
        sink = RecordingSink()
        await broker.start(sink.on_event, sink.on_control)
        return sink

    async def test_seq_starts_at_one_and_grows_by_one(self, broker: Broker) -> None:
        await self._started(broker)
        try:
            seqs = [(await broker.publish(_msg("r1", i), 100)).message.seq for i in range(5)]
            assert seqs == [1, 2, 3, 4, 5]
            position = await broker.position("r1")
            assert position.seq == 5 and position.epoch
            assert (await broker.position("other")).seq == 0
        finally:
            await broker.stop()

    async def test_subscribed_rooms_are_delivered_in_order(self, broker: Broker) -> None:
        sink = await self._started(broker)
        try:
            await broker.subscribe("r2")
            for i in range(20):
                await broker.publish(_msg("r2", i), 100)
            await broker.publish(_msg("not-subscribed", 0), 100)
            events = await sink.wait_events(20)
            await asyncio.sleep(0.05)
            assert [m.seq for m in events] == list(range(1, 21))
            assert all(m.room == "r2" for m in sink.events)
        finally:
            await broker.stop()

    async def test_read_is_all_or_nothing(self, broker: Broker) -> None:
        await self._started(broker)
        try:
            for i in range(10):
                await broker.publish(_msg("r3", i), 4)
            assert [m.seq for m in await broker.read("r3", 7) or []] == [8, 9, 10]
            assert await broker.read("r3", 10) == []
            assert await broker.read("r3", 2) is None  # seq 3..6 left the window
            partial = await broker.read("r3", 0, partial=True) or []
            assert [m.seq for m in partial] == [7, 8, 9, 10]
        finally:
            await broker.stop()

    async def test_idempotency_key_publishes_once(self, broker: Broker) -> None:
        sink = await self._started(broker)
        try:
            await broker.subscribe("r4")
            first = await broker.publish(_msg("r4", 1, key="k"), 100)
            again = await broker.publish(_msg("r4", 2, key="k"), 100)
            assert not first.duplicate and again.duplicate
            assert again.message.seq == first.message.seq
            await sink.wait_events(1)
            await asyncio.sleep(0.05)
            assert len(sink.events) == 1
        finally:
            await broker.stop()

    async def test_presence_respects_max_size(self, broker: Broker) -> None:
        await self._started(broker)
        try:
            p = broker.presence
            assert await p.join("r5", PresenceEntry("a", "c1"), 2)
            assert await p.join("r5", PresenceEntry("b", "c2"), 2)
            assert not await p.join("r5", PresenceEntry("c", "c3"), 2)
            assert await p.count("r5") == 2
            await p.leave("r5", "c1")
            assert {m.client_id for m in await p.members("r5")} == {"c2"}
            await p.connect(PresenceEntry("b", "c2"))
            assert await p.clients_of("b") == ["c2"]
            await p.disconnect(PresenceEntry("b", "c2"))
            assert await p.clients_of("b") == [] and await p.count("r5") == 0
        finally:
            await broker.stop()

    async def test_concurrent_joins_never_exceed_max_size(self, broker: Broker) -> None:
        await self._started(broker)
        try:
            results = await asyncio.gather(*(
                broker.presence.join("r6", PresenceEntry(f"u{i}", f"c{i}"), 5)
                for i in range(30)
            ))
            assert sum(results) == 5 and await broker.presence.count("r6") == 5
        finally:
            await broker.stop()

    async def test_control_frames_reach_the_node(self, broker: Broker) -> None:
        sink = await self._started(broker)
        try:
            await broker.control({"type": "direct", "user_id": "u", "event": "x", "data": 1,
                                  "from": "server", "ts": 0})
            async with asyncio.timeout(5):
                while not sink.controls:
                    sink.arrived.clear()
                    await sink.arrived.wait()
            assert sink.controls[0]["user_id"] == "u"
        finally:
            await broker.stop()

    async def test_drop_room_changes_epoch(self, broker: Broker) -> None:
        await self._started(broker)
        try:
            await broker.publish(_msg("r7", 1), 10)
            before = await broker.position("r7")
            await broker.drop_room("r7")
            after = await broker.position("r7")
            assert after.seq == 0 and after.epoch != before.epoch
        finally:
            await broker.stop()

    async def test_restore_continues_from_a_stored_position(self, broker: Broker) -> None:
        await self._started(broker)
        try:
            await broker.restore("r8", Position(41, "stored-epoch"))
            assert await broker.position("r8") == Position(41, "stored-epoch")
            published = await broker.publish(_msg("r8", 1), 10)
            assert published.message.seq == 42
            assert await broker.read("r8", 40) is None  # 41 is only in the store
            assert [m.seq for m in await broker.read("r8", 41) or []] == [42]
            await broker.restore("r8", Position(5, "older"))  # behind: ignored
            assert await broker.position("r8") == Position(42, "stored-epoch")
        finally:
            await broker.stop()
