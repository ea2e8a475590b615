"""Turning ``metrics=`` into an exporter, with the install line when the extra is missing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.config import MetricsConfig

if TYPE_CHECKING:
    from .exporter import Exporter


def metrics_config(setting: bool | MetricsConfig) -> MetricsConfig | None:
    """``metrics=True`` or an enabled ``MetricsConfig``: the config; otherwise None."""
    if isinstance(setting, MetricsConfig):
        return setting if setting.enabled else None
    return MetricsConfig() if setting else None


def build(config: MetricsConfig) -> Exporter:
    """The exporter (imports prometheus-client, which the ``metrics`` extra installs)."""
    try:
        from .exporter import Exporter
    except ImportError as exc:
        raise ImportError(
            'metrics= needs the metrics extra: pip install "dialogue-fastapi[metrics]"'
        ) from exc
    return Exporter(config)
