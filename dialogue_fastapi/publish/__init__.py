"""The publish pipeline: rules, limits and middleware before the broker; handlers and outbox after. See
docs/architecture.md.
"""
