"""OpenTelemetry traces (``tracing=True``, the ``otel`` extra); see docs/tracing.md.

Only ``dialogue_fastapi.tracing.otel`` imports opentelemetry, and only when
``tracing=`` is on: this module picks the implementation and says which
extra to install when it is missing.
"""

from __future__ import annotations

from ..core.config import TracingConfig
from ..core.tracing import Tracing

__all__ = ["TracingConfig", "build", "tracing_config"]


def tracing_config(setting: bool | TracingConfig) -> TracingConfig | None:
    """``tracing=True`` or an enabled ``TracingConfig``: the config; otherwise None."""
    if isinstance(setting, TracingConfig):
        return setting if setting.enabled else None
    return TracingConfig() if setting else None


def build(config: TracingConfig) -> Tracing:
    """The OpenTelemetry tracing (imports opentelemetry, which the ``otel`` extra installs)."""
    try:
        from .otel import OtelTracing
    except ImportError as exc:
        raise ImportError(
            'tracing= needs the otel extra: pip install "dialogue-fastapi[otel]"'
        ) from exc
    return OtelTracing(config.tracer_provider)
