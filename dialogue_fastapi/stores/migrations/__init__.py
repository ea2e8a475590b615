"""Alembic migrations of the SQL store (run them with ``python -m dialogue_fastapi.stores.migrate``)."""
