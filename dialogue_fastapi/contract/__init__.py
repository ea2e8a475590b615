"""The contract exported for clients: the AsyncAPI 3.0 document. See docs/architecture.md."""
