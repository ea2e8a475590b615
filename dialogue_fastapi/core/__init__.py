"""Errors, types, configuration, events, the input rules and the client address: no transport, no
backend. See docs/architecture.md.
"""
