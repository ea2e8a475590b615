"""Room state: set and read, persisted with a store, in-process without one."""

from __future__ import annotations

import pytest
from test_write_behind import FlakyStore

from dialogue_fastapi import Dialogue, DialogueError, RoomConfig


def make(**settings: object) -> Dialogue:
    return Dialogue(rooms={"chat": RoomConfig(name="Chat")}, allow_anonymous=True, **settings)


async def test_without_persistence_state_lives_in_the_process() -> None:
    dialogue = make()
    assert await dialogue.get_room_state("chat") is None
    await dialogue.set_room_state("chat", {"topic": "hello", "n": [1, 2]})
    assert await dialogue.get_room_state("chat") == {"topic": "hello", "n": [1, 2]}
    with pytest.raises(DialogueError) as not_json:
        await dialogue.set_room_state("chat", {"when": object()})
    assert not_json.value.code == "BAD_REQUEST"
    with pytest.raises(DialogueError) as missing:
        await dialogue.set_room_state("nope", 1)
    assert missing.value.code == "ROOM_NOT_FOUND"
    await dialogue.create_room("tmp", RoomConfig(name="Tmp"))
    await dialogue.set_room_state("tmp", 1)
    await dialogue.delete_room("tmp")
    await dialogue.create_room("tmp", RoomConfig(name="Tmp"))
    assert await dialogue.get_room_state("tmp") is None  # deleting a room forgets its state


async def test_setting_state_while_the_database_is_down_is_unavailable() -> None:
    store = FlakyStore()
    dialogue = make(persistence=store, durable_timeout=0.5)
    await dialogue.start()
    try:
        await dialogue.set_room_state("chat", {"v": 1})
        assert await store.get_state("chat") == {"v": 1}  # committed when it returns
        store.delay = 1.0
        with pytest.raises(DialogueError) as slow:
            await dialogue.set_room_state("chat", {"v": 2})
        assert slow.value.code == "UNAVAILABLE"
    finally:
        store.delay = 0.0
        await dialogue.stop()
    assert await store.get_state("chat") == {"v": 2}  # applied once the database answered
