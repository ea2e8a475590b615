"""The chat example keeps its history in SQLite: each browser test gets its own file."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def chat_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``DIALOGUE_DATABASE_URL`` wins over the example's ``chat.db`` (a fresh history per test)."""
    monkeypatch.setenv("DIALOGUE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
