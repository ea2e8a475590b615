"""Databases for the persistence tests: a SQLite file per test and the real PostgreSQL
(see ``tests/pg_helpers.py``). Every test gets its own table prefix; its tables are
dropped afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pg_helpers import PG_URL, drop_tables, need_postgres, postgres_problem

__all__ = ["BACKENDS", "PG_URL", "drop_tables", "need_postgres", "postgres_problem"]
BACKENDS = ["sqlite", "postgresql"]


class Database:
    """One backend for one test: its URL and a fresh table prefix."""

    def __init__(self, backend: str, url: str, prefix: str) -> None:
        self.backend, self.url, self.prefix = backend, url, prefix

    def store(self, **options: Any) -> Any:
        from dialogue_fastapi.stores.sql import SqlStore

        return SqlStore(self.url, table_prefix=self.prefix, **options)

    def __repr__(self) -> str:
        return f"Database({self.backend})"


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database on each backend (SQLite: a file in tmp_path)."""
    prefix = f"t{secrets.token_hex(4)}_"
    if request.param == "postgresql":
        await need_postgres()
        database = Database("postgresql", PG_URL, prefix)
    else:
        database = Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'dialogue.db'}", prefix)
    yield database
    if request.param == "postgresql":
        await drop_tables(PG_URL, prefix)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Callable[[str], str]:
    def url(name: str = "dialogue.db") -> str:
        return f"sqlite+aiosqlite:///{tmp_path / name}"

    return url
