"""The chat demo keeps its history across restarts on its SQLite file."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType

import pytest

CHAT_APP = Path(__file__).resolve().parents[2] / "examples" / "chat" / "app.py"
_loads = itertools.count()


def load_chat_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"chat_demo_{next(_loads)}", CHAT_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_uses_a_sqlite_file_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIALOGUE_DATABASE_URL", raising=False)
    assert load_chat_app().dialogue.config.persistence == "sqlite+aiosqlite:///chat.db"


async def test_history_and_rooms_survive_a_restart(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DIALOGUE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
    first = load_chat_app().dialogue
    await first.start()
    await first.trigger("lobby", "message", {"text": "still here after a restart?"})
    await first.create_room("book-club", first.room("lobby").config, created_by="alice")
    await first.stop()

    second = load_chat_app().dialogue
    await second.start()
    try:
        assert [m.data["text"] for m in await second.history("lobby")] == ["still here after a restart?"]
        assert "book-club" in [r.id for r in second.rooms()]
        assert (await second.trigger("lobby", "message", {"text": "yes"})).seq == 2
    finally:
        await second.stop()
