"""Control frames between the nodes of a cluster (JSON only). See docs/architecture.md."""
