"""Rate limits: publishes, REST routes, connection attempts and failed authentications. See
docs/architecture.md.
"""
