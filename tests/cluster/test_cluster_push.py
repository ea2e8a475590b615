"""Push notifications on two real nodes (``push_app``) sharing Redis and PostgreSQL.

Devices are registered over REST (``POST /push/subscriptions``) and so live in
PostgreSQL, seen by both nodes; both nodes run a dispatcher on the same outbox, against
the fake Web Push service of this process (it verifies VAPID and decrypts). Each test has
its own nodes, Redis key prefix and table prefix. Covered: one notification per event and
device although both nodes dispatch; a member online on the other node is not notified;
a node killed before the grace period ended, or while it was sending (its lease runs
out), leaves the notification to the other node, which sends it once; a send that takes
longer than the lease keeps its claim (renewed), so the other node does not send it too.

"Nothing more arrives" is checked without fixed sleeps: a marker event is published
last and its notification awaited, and the outbox must be empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from nodes import NodeProcess, bearer, eventually, node_env, start_all, stop_all
from pg_helpers import fresh_postgres
from push.fakes.webpush import FakeWebPush, Received, Subscription
from redis_helpers import REDIS_URL, delete_prefix, need_redis
from starlette.requests import Request
from starlette.responses import Response

from dialogue_fastapi.push.vapid import generate_vapid_key
from dialogue_fastapi.testing import WsProbe

VAPID = generate_vapid_key()


class HoldingWebPush(FakeWebPush):
    """The fake Web Push service, which can hold the next request to one endpoint until the test
    releases it: then it is answered normally (``record=True``), or it fails unrecorded as if the
    service never accepted it (``record=False``: the sending node died meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self._holds: dict[str, bool] = {}

    def hold(self, sub: Subscription, *, record: bool) -> None:
        self._holds[sub.path] = record

    async def _push(self, request: Request) -> Response:
        record = self._holds.pop(request.url.path, None)
        if record is None:
            return await super()._push(request)
        await request.body()
        self.arrived.set()
        await self.release.wait()
        if record:
            return await super()._push(request)
        return Response("the service went away", 503)


@dataclass
class PushCluster:
    nodes: list[NodeProcess]
    fake: HoldingWebPush
    http: httpx.AsyncClient
    engine: Any
    tables: Any

    async def register(self, node: NodeProcess, user: str, sub: Subscription,
                       rooms: list[str]) -> str:
        keys = sub.device().keys
        response = await self.http.post(node.api_url + "/push/subscriptions", headers=bearer(user),
                                        json={"kind": "webpush", "endpoint": sub.endpoint,
                                              "keys": keys, "rooms": rooms})
        assert response.status_code == 201, response.text
        registration: str = response.json()["id"]
        return registration

    async def publish(self, node: NodeProcess, user: str, room: str, text: str) -> int:
        response = await self.http.post(f"{node.api_url}/rooms/{room}/events", headers=bearer(user),
                                        json={"event": "message", "data": {"text": text}})
        assert response.status_code == 202, response.text
        seq: int = response.json()["seq"]
        return seq

    async def stats(self, node: NodeProcess) -> dict[str, Any]:
        response = await self.http.get(node.http_url + "/test/push")
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    async def outbox(self) -> list[Any]:
        from sqlalchemy import select

        async with self.engine.connect() as conn:
            return list(await conn.execute(select(self.tables.push_outbox)))

    async def sent_rows(self) -> int:
        from sqlalchemy import func, select

        async with self.engine.connect() as conn:
            return int((await conn.execute(
                select(func.count()).select_from(self.tables.push_sent))).scalar_one())

    async def drained(self) -> None:
        """Until the outbox (and its sent records) are empty."""
        await until(self._empty, what="the push outbox to empty")

    async def _empty(self) -> bool:
        return not await self.outbox() and await self.sent_rows() == 0

    def got(self, sub: Subscription) -> list[Received]:
        return [r for r in self.fake.for_path(sub) if r.status == 201]

    def bodies(self, sub: Subscription) -> list[str]:
        return [str(r.payload["body"]) for r in self.got(sub)]


async def until(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.03)


@contextlib.asynccontextmanager
async def push_cluster(log_dir: Path, *, grace: float, lease: float = 120.0
                       ) -> AsyncIterator[PushCluster]:
    """Nodes A and B of ``push_app`` on a Redis key prefix and PostgreSQL tables of their own."""
    await need_redis()
    from dialogue_fastapi.stores.sql_engine import create_engine
    from dialogue_fastapi.stores.sql_schema import build_tables

    fake = HoldingWebPush()
    await fake.start()
    key_prefix = f"dpush{secrets.token_hex(4)}:"
    try:
        async with fresh_postgres() as (db_url, table_prefix):
            env = node_env(REDIS_URL, key_prefix, {
                "PUSH_DATABASE_URL": db_url, "PUSH_TABLE_PREFIX": table_prefix, "PUSH_VAPID": VAPID,
                "PUSH_GRACE": str(grace), "PUSH_LEASE": str(lease)})
            nodes = [NodeProcess(f"node{name}", env, log_dir, app="push_app:app") for name in "AB"]
            engine = create_engine(db_url)
            try:
                async with httpx.AsyncClient(timeout=10.0) as http:
                    await start_all(nodes)
                    yield PushCluster(nodes, fake, http, engine, build_tables(table_prefix))
            finally:
                fake.release.set()
                await stop_all(nodes)  # before their tables are dropped
                await engine.dispose()
            for node in nodes:
                assert "Traceback" not in node.log_path.read_text(errors="replace"), node.tail(80)
    finally:
        fake.release.set()
        await fake.stop()
        await delete_prefix(key_prefix)


async def test_an_offline_member_gets_one_notification_per_event_from_two_dispatchers(
        tmp_path: Path) -> None:
    events_a, events_b = 8, 8
    rooms = [f"room{i}" for i in range(events_a + events_b)]
    async with push_cluster(tmp_path, grace=0.5) as c:
        a, b = c.nodes
        phone, laptop, carols = c.fake.subscribe(), c.fake.subscribe(), c.fake.subscribe()
        await c.register(a, "alice", phone, [*rooms, "design"])
        await c.register(b, "alice", laptop, [*rooms, "design"])
        await c.register(b, "carol", carols, [*rooms, "design"])
        # every event in a room of its own: its notification cannot collapse with another's
        await asyncio.gather(
            *(c.publish(a, "bob", room, f"on A {room}") for room in rooms[:events_a]),
            *(c.publish(b, "dave", room, f"on B {room}") for room in rooms[events_a:]))
        devices = (phone, laptop, carols)
        await until(lambda: all(len(c.got(d)) >= len(rooms) for d in devices),
                    what="every event's notification on every device")
        await c.publish(b, "bob", "design", "marker")  # published last: notified last
        await until(lambda: all("bob: marker" in c.bodies(d) for d in devices),
                    what="the marker's notification")
        await c.drained()
        for device in devices:
            tags = sorted(str(r.payload["tag"]) for r in c.got(device))
            assert tags == sorted([*rooms, "design"]), tags  # one per event, none twice
            assert all("count" not in r.payload.get("data", {}) for r in c.got(device))
        assert not c.fake.rejected
        stats = [await c.stats(node) for node in c.nodes]
        assert sum(s["sent"] for s in stats) == 3 * (len(rooms) + 1), stats
        assert all(s["gave_up"] == 0 and s["failed"] == 0 for s in stats), stats


async def test_a_member_online_on_the_other_node_is_not_notified(tmp_path: Path) -> None:
    async with push_cluster(tmp_path, grace=0.3) as c:
        a, b = c.nodes
        alices, carols = c.fake.subscribe(), c.fake.subscribe()
        await c.register(b, "alice", alices, ["design"])
        await c.register(a, "carol", carols, ["design"])
        alice = await WsProbe.open(b.ws_url("alice"))
        try:
            await alice.request("join", room="design")
            await eventually(lambda: c.http.get(f"{a.api_url}/rooms/design/presence",
                                                headers=bearer("bob")),
                             lambda r: "alice" in r.text, what="alice's presence seen by node A")
            await c.publish(a, "bob", "design", "while alice is here")
            await until(lambda: c.got(carols), what="carol's notification")
            await c.drained()
            await c.publish(a, "bob", "design", "marker")  # for carol only, too
            await until(lambda: "bob: marker" in c.bodies(carols), what="the marker")
            await c.drained()
        finally:
            await alice.close()
        assert c.fake.for_path(alices) == []
        assert c.bodies(carols) == ["bob: while alice is here", "bob: marker"]


async def test_a_node_killed_before_the_grace_period_ended_leaves_it_to_the_other(
        tmp_path: Path) -> None:
    grace = 3.0
    async with push_cluster(tmp_path, grace=grace) as c:
        a, b = c.nodes
        alices = c.fake.subscribe()
        await c.register(a, "alice", alices, ["design"])
        published = time.monotonic()
        await c.publish(a, "bob", "design", "while A dies")
        await until(c.outbox, what="the outbox row")
        await a.kill()  # SIGKILL: the row is written, its grace period has not ended
        assert time.monotonic() - published < grace, "too slow: the premise does not hold"
        assert c.fake.received == []
        await until(lambda: c.got(alices), what="node B's notification")
        await c.drained()
        assert (await c.stats(b))["sent"] == 1
        await a.start()  # the restarted node does not send it again
        await c.publish(a, "bob", "design", "marker")
        await until(lambda: "bob: marker" in c.bodies(alices), what="the marker")
        await c.drained()
        assert c.bodies(alices) == ["bob: while A dies", "bob: marker"]
        assert len(c.fake.received) == 2


async def test_a_node_killed_while_sending_leaves_it_to_the_other_when_its_lease_ends(
        tmp_path: Path) -> None:
    lease = 2.0
    async with push_cluster(tmp_path, grace=0.3, lease=lease) as c:
        alices = c.fake.subscribe()
        await c.register(c.nodes[0], "alice", alices, ["design"])
        c.fake.hold(alices, record=False)  # the first send hangs, then fails unrecorded
        await c.publish(c.nodes[0], "bob", "design", "while sending")
        await asyncio.wait_for(c.fake.arrived.wait(), 15)
        [row] = await c.outbox()
        owners = {(await c.stats(n))["owner"]: n for n in c.nodes}
        sending = owners[row.claimed_by.split(":")[0]]
        other = next(n for n in c.nodes if n is not sending)
        await sending.kill()  # mid-send: the claim is held, nothing recorded
        killed = time.monotonic()
        c.fake.release.set()
        await until(lambda: c.got(alices), what="the other node's send")
        assert time.monotonic() - killed <= lease + 5
        await c.drained()
        assert (await c.stats(other))["sent"] == 1
        await sending.start()
        await c.publish(sending, "bob", "design", "marker")
        await until(lambda: "bob: marker" in c.bodies(alices), what="the marker")
        await c.drained()
        assert c.bodies(alices) == ["bob: while sending", "bob: marker"]


async def test_a_send_longer_than_the_lease_keeps_its_claim(tmp_path: Path) -> None:
    lease = 1.0
    async with push_cluster(tmp_path, grace=0.3, lease=lease) as c:
        alices = c.fake.subscribe()
        await c.register(c.nodes[0], "alice", alices, ["design"])
        c.fake.hold(alices, record=True)  # the first send takes longer than the lease
        await c.publish(c.nodes[1], "bob", "design", "slow service")
        await asyncio.wait_for(c.fake.arrived.wait(), 15)
        [first] = await c.outbox()
        # until the first lease is long over and the row is still the same claim's (renewed)
        await until(lambda: _renewed(c, first, 1500), what="the lease to be renewed")
        c.fake.release.set()
        await until(lambda: c.got(alices), what="the slow send")
        await c.drained()
        await c.publish(c.nodes[0], "bob", "design", "marker")
        await until(lambda: "bob: marker" in c.bodies(alices), what="the marker")
        await c.drained()
        assert c.bodies(alices) == ["bob: slow service", "bob: marker"]
        assert len(c.fake.received) == 2


async def _renewed(c: PushCluster, first: Any, beyond_ms: int) -> bool:
    rows = await c.outbox()
    assert len(rows) == 1 and rows[0].claimed_by == first.claimed_by, rows
    now = int(time.time() * 1000)
    return bool(now > first.claimed_until + beyond_ms and rows[0].claimed_until > now)
