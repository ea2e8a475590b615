"""The REST front end: routes, their pydantic models and the protocol's error body. See
docs/architecture.md.
"""
