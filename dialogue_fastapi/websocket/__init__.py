"""The WebSocket front end: endpoint, session and one adapter per command. See docs/architecture.md."""
