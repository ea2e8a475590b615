"""Authentication as a FastAPI dependency, its gate (limits per IP before authenticate),
origins, connection tickets and log redaction. See docs/architecture.md.
"""
