"""One user's publish budget is shared by two real server processes through Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nodes import NodeProcess, fresh_nodes
from redis_helpers import REDIS_URL, need_redis

from dialogue_fastapi.testing import WsProbe


@pytest.fixture
async def limited_nodes(tmp_path: Path) -> AsyncIterator[list[NodeProcess]]:
    await need_redis()
    async with fresh_nodes("AB", REDIS_URL, tmp_path, {"CLUSTER_RATE_LIMIT": "4/minute"},
                           prefix="dlimit") as nodes:
        yield nodes


async def test_a_users_budget_is_shared_by_two_worker_processes(
    limited_nodes: list[NodeProcess],
) -> None:
    a, b = limited_nodes
    on_a = await WsProbe.open(a.ws_url("erin"))
    on_b = await WsProbe.open(b.ws_url("erin"))
    other = await WsProbe.open(b.ws_url("frank"))
    try:
        for probe in (on_a, on_b, other):
            await probe.request("join", room="cross")
        outcomes = []
        for n in range(6):  # alternate processes: the budget of 4 is one, not one per process
            probe = on_a if n % 2 == 0 else on_b
            reply = await probe.reply("publish", room="cross", event="e", data=n)
            outcomes.append("ok" if reply.get("ok") else reply["error"]["code"])
        assert outcomes == ["ok"] * 4 + ["RATE_LIMITED"] * 2
        assert (await other.reply("publish", room="cross", event="e", data=0))["ok"] is True
    finally:
        for probe in (on_a, on_b, other):
            await probe.close()
