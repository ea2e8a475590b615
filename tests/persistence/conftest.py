"""Databases for the persistence tests: a SQLite file per test and the real PostgreSQL.

PostgreSQL comes from ``DIALOGUE_TEST_DATABASE_URL`` (default the local
server's ``test`` database). Without it the PostgreSQL tests are skipped
with the reason, except under ``CI=true`` where they fail. Every test gets
its own table prefix; its tables are dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

PG_URL = os.environ.get("DIALOGUE_TEST_DATABASE_URL",
                        "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["sqlite", "postgresql"]
_pg_problem: list[str | None] = []


async def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used (None: it can); checked once per session."""
    if _pg_problem:
        return _pg_problem[0]
    problem = None
    try:
        import asyncpg  # noqa: F401
        from sqlalchemy import text

        from dialogue_fastapi.stores.sql_engine import create_engine
    except ImportError as exc:
        problem = f'{exc.name} is not installed: pip install "dialogue-fastapi[postgres]"'
    else:
        engine = create_engine(PG_URL, connect_args={"timeout": 3})
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            problem = f"PostgreSQL at {PG_URL} is not reachable ({type(exc).__name__}: {exc})"
        finally:
            await engine.dispose()
    _pg_problem.append(problem)
    return problem


async def need_postgres() -> None:
    problem = await postgres_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"PostgreSQL tests cannot run under CI: {problem}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {problem}")


async def drop_tables(url: str, prefix: str) -> None:
    from sqlalchemy import text

    from dialogue_fastapi.stores.sql_engine import create_engine
    from dialogue_fastapi.stores.sql_schema import build_tables

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for name in reversed(build_tables(prefix).names()):
                await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    finally:
        await engine.dispose()


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
