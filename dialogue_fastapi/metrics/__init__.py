"""Prometheus metrics (the ``metrics`` extra): the only package that imports prometheus-client.

Nothing else imports it: the facade builds an :class:`~.exporter.Exporter`
through :func:`build` only when ``metrics=`` is on. See docs/metrics.md.
"""
