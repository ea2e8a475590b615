"""The adapter example of docs/persistence.md passes the contract and runs a Dialogue."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dialogue_fastapi import Dialogue, RoomConfig
from dialogue_fastapi.testing import EventStoreContract

DOCS = Path(__file__).resolve().parents[2] / "docs" / "persistence.md"


def adapter_class() -> Any:
    text = DOCS.read_text()
    match = re.search(r"<!-- adapter-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/persistence.md lost its adapter example"
    namespace: dict[str, Any] = {"__name__": "adapter_example"}
    exec(compile(match.group(1), str(DOCS), "exec"), namespace)
    return namespace["JsonLinesStore"]


JsonLinesStore = adapter_class()


class TestJsonLinesStore(EventStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Any]:
        yield JsonLinesStore(tmp_path)


async def test_a_dialogue_continues_on_the_custom_store(tmp_path: Path) -> None:
    def make() -> Dialogue:
        return Dialogue(rooms={"chat": RoomConfig(name="Chat")}, allow_anonymous=True,
                        persistence=JsonLinesStore(tmp_path))

    first = make()
    await first.start()
    for n in range(3):
        await first.trigger("chat", "note", {"n": n})
    epoch = (await first.position("chat")).epoch
    await first.stop()
    second = make()
    await second.start()
    try:
        assert (await second.position("chat")).epoch == epoch
        assert (await second.trigger("chat", "note", {"n": 3})).seq == 4
        assert [m.data["n"] for m in await second.history("chat")] == [0, 1, 2, 3]
        await second.set_room_state("chat", {"kept": "in this process"})  # no RoomStore
        assert await second.get_room_state("chat") == {"kept": "in this process"}
    finally:
        await second.stop()
