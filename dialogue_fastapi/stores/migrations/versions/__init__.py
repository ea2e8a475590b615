"""Revisions, oldest first: r0001 (the initial schema)."""
