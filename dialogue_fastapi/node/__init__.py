"""A node's live connections, their fan-out (the hub) and the exit signal. See docs/architecture.md."""
