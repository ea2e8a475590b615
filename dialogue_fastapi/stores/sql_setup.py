"""Schema setup of the SQL store on start: create the tables, or migrate an older schema.

Split from :mod:`.sql_engine` so that :mod:`.migrate` (which needs engines)
and this module (which needs :func:`.migrate.run_upgrade`) import one way.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from .migrate import run_upgrade
from .sql_schema import SCHEMA_REVISION, Tables

logger = logging.getLogger("dialogue_fastapi")

KNOWN_REVISIONS = ["r0001", "r0002", "r0003"]  # oldest first; the last one is SCHEMA_REVISION


def _lock_key(prefix: str) -> int:
    digest = hashlib.sha256(f"dialogue-fastapi:{prefix}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def ensure_schema(conn: AsyncConnection, tables: Tables, auto_migrate: bool) -> str:
    """Create missing tables or migrate; returns what happened (``created``/``current``/``migrated``)."""
    if conn.dialect.name == "postgresql":  # one process at a time sets the schema up
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": _lock_key(tables.prefix)})
    version = await conn.run_sync(_read_version, tables)
    if version is None:
        await conn.run_sync(tables.metadata.create_all)
        await conn.run_sync(_stamp, tables, SCHEMA_REVISION)
        return "created"
    if version == SCHEMA_REVISION:
        return "current"
    if version not in KNOWN_REVISIONS:
        raise RuntimeError(
            f"the database schema of {tables.prefix!r} is at revision {version}, newer than "
            f"this dialogue-fastapi ({SCHEMA_REVISION}): upgrade dialogue-fastapi"
        )
    if not auto_migrate:
        raise RuntimeError(
            f"the database schema of {tables.prefix!r} is at revision {version}; run "
            f"'python -m dialogue_fastapi.stores.migrate upgrade --url ...' "
            f"(or pass auto_migrate=True)"
        )
    await conn.run_sync(run_upgrade, tables.prefix, SCHEMA_REVISION)
    logger.info("dialogue-fastapi schema migrated from %s to %s", version, SCHEMA_REVISION)
    return "migrated"


def _read_version(conn: Connection, tables: Tables) -> str | None:
    inspector = inspect(conn)
    if not inspector.has_table(tables.version_table):
        if inspector.has_table(tables.events.name):
            raise RuntimeError(
                f"{tables.events.name} exists but {tables.version_table} does not: stamp the "
                "schema with 'python -m dialogue_fastapi.stores.migrate stamp --url ...'"
            )
        return None
    row = conn.execute(text(f"SELECT version_num FROM {tables.version_table}")).first()
    return None if row is None else str(row[0])


def _stamp(conn: Connection, tables: Tables, revision: str) -> None:
    version = Table(tables.version_table, MetaData(),
                    Column("version_num", String(32), nullable=False),
                    PrimaryKeyConstraint("version_num", name=f"{tables.version_table}_pkc"))
    version.create(conn, checkfirst=True)
    conn.execute(version.delete())
    conn.execute(version.insert().values(version_num=revision))
