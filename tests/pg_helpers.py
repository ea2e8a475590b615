"""The real PostgreSQL for tests: reachability, fresh table prefixes, cleanup.

PostgreSQL comes from ``DIALOGUE_TEST_DATABASE_URL`` (default the local
server's ``test`` database). Without it the PostgreSQL tests are skipped
with the reason, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

PG_URL = os.environ.get("DIALOGUE_TEST_DATABASE_URL",
                        "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
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



@asynccontextmanager
async def fresh_postgres() -> AsyncIterator[tuple[str, str]]:
    """(URL, table prefix) of fresh tables on the real PostgreSQL, dropped afterwards."""
    await need_postgres()
    prefix = f"t{secrets.token_hex(4)}_"
    try:
        yield PG_URL, prefix
    finally:
        await drop_tables(PG_URL, prefix)
