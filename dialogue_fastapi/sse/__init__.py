"""The SSE front end: ``GET /sse``, the SSE transport that frames events, the cursor. See
docs/architecture.md.
"""
