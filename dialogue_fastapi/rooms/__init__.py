"""Rooms: the registry, joining and leaving, history, runtime rooms, state and retention. See
docs/architecture.md.
"""
