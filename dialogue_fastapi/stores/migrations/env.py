"""Alembic environment of the SQL store: its own version table, only its own tables.

The table prefix comes from the Alembic config's attributes (the store and
``dialogue_fastapi.stores.migrate`` set it) or ``-x prefix=...``; it reaches
the revisions as the *tag* argument. A connection passed in
``config.attributes["connection"]`` is used as is; otherwise the URL comes
from ``sqlalchemy.url`` or ``-x url=...``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from dialogue_fastapi.stores.sql_engine import create_engine
from dialogue_fastapi.stores.sql_schema import DEFAULT_PREFIX, build_tables

config = context.config
x_args = context.get_x_argument(as_dictionary=True)
prefix: str = config.attributes.get("table_prefix") or x_args.get("prefix", DEFAULT_PREFIX)
tables = build_tables(prefix)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Autogenerate and compare only the library's tables, never the application's."""
    if type_ == "table":
        return name is not None and name.startswith(prefix) and name != tables.version_table
    return True


def _configure(**kwargs: Any) -> None:
    context.configure(target_metadata=tables.metadata, version_table=tables.version_table,
                      include_name=include_name, tag=prefix, **kwargs)


def run_on(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


async def run_online(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


def main() -> None:
    url = x_args.get("url") or config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
    elif url:
        asyncio.run(run_online(url))
    else:
        raise RuntimeError("no database: pass --url (or -x url=...)")


main()
