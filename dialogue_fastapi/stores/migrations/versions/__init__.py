"""Revisions, oldest first: r0001 (the initial schema), r0002 (dead letters)."""
