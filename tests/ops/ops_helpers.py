"""The deployment files (docker-compose.yml, deploy/, the Grafana dashboard) as data, and
the metric names and labels the exporter defines or a scrape exposes."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from dialogue_fastapi.core.config import LATENCY_BUCKETS
from dialogue_fastapi.metrics.families import BrokerFamilies, Families, PushFamilies, StoreFamilies

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
PROMETHEUS_CONF = ROOT / "deploy" / "prometheus.yml"
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
DASHBOARD = ROOT / "docs" / "grafana" / "dialogue-dashboard.json"
CHAT_APP = ROOT / "examples" / "chat" / "app.py"

METRIC_NAME = re.compile(r"\bdialogue_[a-z0-9_]+\b")
BY_CLAUSE = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
#: labels every series has (Prometheus adds them) or that histogram_quantile needs
ALWAYS_LABELS = frozenset({"instance", "job", "le"})
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def load_yaml(path: Path) -> Any:
    yaml: Any = importlib.import_module("yaml")  # PyYAML (the tests call need_module first)
    return yaml.safe_load(path.read_text())


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included (rows themselves left out)."""
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def expressions(board: dict[str, Any]) -> list[str]:
    """The PromQL of every panel target and of every query variable."""
    exprs = [t["expr"] for p in panels(board) for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def sample_names(families: Iterable[tuple[str, str]]) -> set[str]:
    """The series names of ``(family name, type)`` pairs (``x_total``, ``x_bucket``, ...)."""
    return {name + suffix for name, kind in families for suffix in SUFFIXES.get(kind, ("",))}


def defined_metrics() -> dict[str, frozenset[str]]:
    """Series name -> label names of every metric the exporter defines (broker and store too)."""
    registry = CollectorRegistry()
    objects = (Families(registry, LATENCY_BUCKETS), BrokerFamilies(registry), StoreFamilies(registry),
               PushFamilies(registry))
    labels: dict[str, frozenset[str]] = {}
    for holder in objects:
        for metric in vars(holder).values():
            if isinstance(metric, MetricWrapperBase):
                # prometheus-client keeps a metric's label names only in this attribute
                names = frozenset(metric._labelnames)
                for series in sample_names([(metric._name, str(metric._type))]):
                    labels[series] = names
    return labels


def scraped_metrics(text: str) -> set[str]:
    """The series names a scrape declares (a labelled family with no series yet counts)."""
    return sample_names((f.name, f.type) for f in text_string_to_metric_families(text))


def nginx_for(ports: list[int], listens: list[str], prefix: Path) -> str:
    """A whole nginx.conf around deploy/nginx.conf's server block: the same proxy settings,
    its upstream servers replaced by ``127.0.0.1:<port>`` and its ``listen`` by ``listens``,
    every file nginx writes under ``prefix``."""
    text = NGINX_CONF.read_text()
    upstream = re.compile(r"(upstream dialogue_apps \{\n)(?:\s*server [^;]+;\n)+(\})")
    assert len(upstream.findall(text)) == 1, "deploy/nginx.conf: one upstream dialogue_apps block"
    servers = "".join(f"    server 127.0.0.1:{port};\n" for port in ports)
    text = upstream.sub(lambda m: m.group(1) + servers + m.group(2), text)
    listen = re.compile(r"^(\s*)listen 80;$", re.M)
    assert len(listen.findall(text)) == 1, "deploy/nginx.conf: one `listen 80;`"
    text = listen.sub(lambda m: "".join(f"{m.group(1)}listen {a};\n" for a in listens).rstrip(), text)
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} notice;
events {{
    worker_connections 256;
}}
http {{
    access_log {prefix / "access.log"};
{temp}
{text}
}}
"""
