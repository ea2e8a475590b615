"""One process per SQLite file when the broker is not shared: a second process refuses to
start, before it changes anything (no new epochs, no "unclean stop" mark)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from helpers import serve_dialogue
from redis_helpers import REDIS_URL, need_redis

from dialogue_fastapi import Dialogue, Position, RoomConfig, define_event
from dialogue_fastapi.stores.sql_lock import DatabaseInUse, lock_path

message = define_event("message", history=10)
pytestmark = pytest.mark.timeout(60)

SECOND_PROCESS = """
import sys
import uvicorn
from fastapi import FastAPI
from dialogue_fastapi import Dialogue, RoomConfig, define_event

message = define_event("message", history=10)
dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat", events=[message])},
                    allow_anonymous=True, persistence=sys.argv[1])
app = FastAPI()
app.include_router(dialogue.router)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]))  # the port is taken, too
"""


def make(url: str, **settings: object) -> Dialogue:
    return Dialogue(rooms={"chat": RoomConfig(name="Chat", events=[message])},
                    allow_anonymous=True, persistence=url, **settings)


async def run_second_process(url: str, port: int) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SECOND_PROCESS, url, str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, output.decode(errors="replace")


async def test_a_second_process_on_the_same_file_refuses_to_start(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    first = make(url)
    server = await serve_dialogue(first)
    try:
        for i in range(3):
            await first.trigger("chat", "message", {"n": i})
        await first.flush()
        before = await first.position("chat")
        code, output = await run_second_process(url, server.port)
        assert code != 0
        assert "is in use by another process" in output and "broker='redis://...'" in output
        assert await first.position("chat") == before
    finally:
        await server.stop()
    third = make(url)  # the first stopped cleanly: the rooms keep their epoch
    await third.start()
    try:
        assert await third.position("chat") == before == Position(3, before.epoch)
        recovered = await third.runtime.history.recover(third.room("chat"),
                                                        Position(1, before.epoch))
        assert recovered is not None and [m.seq for m in recovered] == [2, 3]
    finally:
        await third.stop()


async def test_the_lock_is_taken_before_anything_changes_and_freed_on_stop(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    first = make(url)
    await first.start()
    second = make(url)
    try:
        with pytest.raises(DatabaseInUse, match="in use by this process"):
            await second.start()
        assert not second.runtime.started
    finally:
        await first.stop()
    assert (tmp_path / "chat.db.lock").exists()
    await second.start()  # free again once the first one stopped
    await second.stop()


async def test_a_shared_broker_needs_no_lock(tmp_path: Path) -> None:
    await need_redis()
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    one = make(url, broker=REDIS_URL)
    two = make(url, broker=REDIS_URL)
    await one.start()
    try:
        await two.start()
        await two.stop()
    finally:
        await one.stop()


def test_in_memory_and_server_databases_take_no_lock(tmp_path: Path) -> None:
    assert lock_path("sqlite+aiosqlite:///:memory:") is None
    assert lock_path("sqlite+aiosqlite://") is None
    assert lock_path("postgresql+asyncpg://u@h/db") is None
    assert lock_path(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}") == tmp_path / "x.db.lock"
