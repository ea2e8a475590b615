"""Schema migrations of the SQL store: Alembic with the library's own version table.

The store creates missing tables on start (and stamps them with the current
revision) and, with ``auto_migrate=True`` (the default), upgrades an older
schema in place. To upgrade explicitly, e.g. in a deploy step::

    python -m dialogue_fastapi.stores.migrate upgrade --url postgresql+asyncpg://...
    python -m dialogue_fastapi.stores.migrate upgrade --url ... --sql   # print the SQL instead
    python -m dialogue_fastapi.stores.migrate current --url ...
    python -m dialogue_fastapi.stores.migrate stamp --url ... --revision r0001

``--prefix`` selects the table prefix (default ``dialogue_``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from sqlalchemy.engine import Connection

from .sql_engine import create_engine, normalise_url
from .sql_schema import DEFAULT_PREFIX, build_tables

SCRIPTS = "dialogue_fastapi.stores:migrations"


def alembic_config(prefix: str = DEFAULT_PREFIX, *, url: str | None = None,
                   connection: Connection | None = None) -> Any:
    """An Alembic ``Config`` for the shipped migrations (no ``alembic.ini`` needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPTS)
    if url is not None:
        config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    config.attributes["table_prefix"] = build_tables(prefix).prefix
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def run_upgrade(connection: Connection, prefix: str, revision: str = "head") -> None:
    """Upgrade on an open (sync) connection: ``await conn.run_sync(run_upgrade, prefix)``."""
    from alembic import command

    command.upgrade(alembic_config(prefix, connection=connection), revision)


def _stamp(connection: Connection, prefix: str, revision: str) -> None:
    from alembic import command

    command.stamp(alembic_config(prefix, connection=connection), revision)


def _current(connection: Connection, prefix: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(
        connection, opts={"version_table": build_tables(prefix).version_table}
    )
    return context.get_current_revision()


async def _on_database(url: str, fn: Any, *args: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn, *args)
    finally:
        await engine.dispose()


async def upgrade(url: str, prefix: str = DEFAULT_PREFIX, revision: str = "head") -> None:
    """Upgrade the schema at ``url`` to ``revision``."""
    await _on_database(url, run_upgrade, prefix, revision)


async def stamp(url: str, prefix: str = DEFAULT_PREFIX, revision: str = "head") -> None:
    """Record ``revision`` as current without running anything."""
    await _on_database(url, _stamp, prefix, revision)


async def current(url: str, prefix: str = DEFAULT_PREFIX) -> str | None:
    """The revision the schema at ``url`` is at (None: not created yet)."""
    result: str | None = await _on_database(url, _current, prefix)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dialogue_fastapi.stores.migrate",
                                     description="Migrate the dialogue-fastapi SQL schema.")
    parser.add_argument("command", choices=["upgrade", "current", "stamp"])
    parser.add_argument("--url", required=True, help="database URL (sqlite+aiosqlite:/// or postgresql+asyncpg://)")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="table prefix (default dialogue_)")
    parser.add_argument("--revision", default="head", help="target revision (default head)")
    parser.add_argument("--sql", action="store_true", help="upgrade: print the SQL, change nothing")
    args = parser.parse_args(argv)
    if args.command == "upgrade" and args.sql:
        from alembic import command

        command.upgrade(alembic_config(args.prefix, url=args.url), args.revision, sql=True)
    elif args.command == "upgrade":
        asyncio.run(upgrade(args.url, args.prefix, args.revision))
    elif args.command == "stamp":
        asyncio.run(stamp(args.url, args.prefix, args.revision))
    else:
        print(asyncio.run(current(args.url, args.prefix)) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
