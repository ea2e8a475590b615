"""The compose deployment's monitoring files hold together: docker-compose.yml mounts files
that exist into the places Prometheus and Grafana read, Prometheus scrapes every app
instance directly, and the Grafana dashboard queries only metrics (and labels) that the
exporter defines, each of them at least once. No container runs here (the machines this is
built on have no Docker engine); tests/ops/test_topology.py runs the same topology as
processes."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest
from helpers import need_module
from ops_helpers import (
    ALWAYS_LABELS,
    BY_CLAUSE,
    COMPOSE,
    DASHBOARD,
    GRAFANA_PROVISIONING,
    METRIC_NAME,
    PROMETHEUS_CONF,
    ROOT,
    dashboard,
    defined_metrics,
    expressions,
    load_yaml,
    panels,
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    need_module("yaml", "pyyaml")
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from the repository's Dockerfile (the chat example)."""
    return {name: s for name, s in compose["services"].items() if s.get("build") == "."}


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host path, container path, mode) of the service's ``./...`` volumes."""
    found = []
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        if source.startswith("./"):
            found.append((source, target, mode[0] if mode else "rw"))
    return found


def test_every_file_compose_mounts_exists_and_is_read_only(compose: dict[str, Any]) -> None:
    mounts = [(name, *m) for name, s in compose["services"].items() for m in bind_mounts(s)]
    assert {name for name, *_ in mounts} >= {"lb", "prometheus", "grafana"}
    for name, source, target, mode in mounts:
        assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
        assert mode == "ro", f"{name} mounts {source} writable"
        assert target.startswith("/"), target


def test_prometheus_scrapes_each_app_instance_directly(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert "9090:9090" in prometheus["ports"]
    assert ("./deploy/prometheus.yml", "/etc/prometheus/prometheus.yml", "ro") in bind_mounts(prometheus)

    config = load_yaml(PROMETHEUS_CONF)
    [job] = config["scrape_configs"]
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    apps = app_services(compose)
    assert len(apps) == 2
    # every app instance by its own address (the image listens on 8000), never the balancer
    assert targets == {f"{name}:8000" for name in apps}
    assert not any(t.startswith("lb") for t in targets)
    assert job["metrics_path"] == "/dialogue/metrics"  # the chat example's prefix (see test_topology)
    for name, app in apps.items():
        # the example serves its metrics to other containers only when asked
        assert app["environment"].get("CHAT_METRICS") == "1", name
        assert "ports" not in app, f"{name} publishes its port: its metrics would be public"


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    assert "3000:3000" in grafana["ports"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounts = {target: source for source, target, _ in bind_mounts(grafana)}

    [datasource] = load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert mounts["/etc/grafana/provisioning/datasources"] == "./deploy/grafana/provisioning/datasources"
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["isDefault"] is True

    [provider] = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "dialogue.yml")["providers"]
    assert mounts["/etc/grafana/provisioning/dashboards"] == "./deploy/grafana/provisioning/dashboards"
    board = [t for t, s in mounts.items() if s == "./" + DASHBOARD.relative_to(ROOT).as_posix()]
    assert len(board) == 1, "the dashboard JSON is mounted once"
    assert PurePosixPath(board[0]).parent == PurePosixPath(provider["options"]["path"])
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == board[0]


def test_dashboard_json_picks_its_datasource_from_a_variable() -> None:
    board = dashboard()
    assert 39 <= board["schemaVersion"] < 42
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    rows = [p for p in board["panels"] if p["type"] == "row"]
    ids = [p["id"] for p in rows + panels(board)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]


def test_dashboard_queries_only_defined_metrics_and_labels_and_shows_every_metric() -> None:
    defined = defined_metrics()
    exprs = expressions(dashboard())
    used: set[str] = set()
    for expr in exprs:
        names = set(METRIC_NAME.findall(expr))
        assert names, f"no dialogue_* metric in {expr!r}"
        unknown = names - defined.keys()
        assert not unknown, f"{expr!r} names metrics the exporter does not define: {sorted(unknown)}"
        labels = ALWAYS_LABELS.union(*(defined[n] for n in names))
        for clause in BY_CLAUSE.findall(expr):
            grouped = {label.strip() for label in clause.split(",") if label.strip()}
            assert grouped <= labels, f"{expr!r} groups by labels its metrics lack: {grouped - labels}"
        used |= names
    # each metric once: a histogram by its buckets, a counter by its _total
    shown = {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in used}
    missing = {n for n in defined
               if n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") not in shown}
    assert not missing, f"metrics the dashboard does not show: {sorted(missing)}"
