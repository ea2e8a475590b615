"""Imports flow one way: a module never imports from a higher layer (CONVENTIONS.md)."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dialogue_fastapi"

LAYERS: list[set[str]] = [
    # core: errors, types, config and the input rules; no HTTP, no backend
    {"core.errors", "core.types", "core.rules", "core", "", "core.metrics", "core.tracing"},
    {"core.families", "core.push_config", "core.notifications", "push.base", "push.templates"},
    {"core.config_env", "core.config", "core.events"},
    {"core.hooks", "core.background", "core.outages", "brokers.base", "stores.base",
     "auth.origins", "core.peers", "auth.log_redaction", "websocket.nodelay", "node.exit_signal",
     "publish.lane", "sse.cursor", "auth", "websocket", "sse", "rest", "publish", "rooms",
     "push", "push.validation", "push.registrations", "push.outbox", "push.preferences",
     "limits", "cluster", "node", "contract", "usecases", "metrics",
     # OpenTelemetry (the only importer of opentelemetry) and the JSON log formatter
     "tracing", "tracing.otel", "logs"},
    # backends, behind their seams
    {"brokers.memory", "brokers", "brokers.redis", "brokers.redis_scripts", "brokers.redis_presence",
     "brokers.redis_subscriber", "brokers.redis_presence_scripts", "brokers.redis_liveness",
     "brokers.redis_options", "brokers.redis_pipeline", "brokers.redis_limits",
     "brokers.redis_cluster", "brokers.redis_shards", "brokers.redis_cluster_presence",
     "stores.memory", "stores",
     # the SQL store and the write-behind queue (SQLAlchemy only in stores.sql*/migrat*)
     "stores.sql_schema", "stores.sql_engine", "stores.sql_queries", "stores.sql_outbox",
     "stores.sql", "stores.migrate", "stores.migrations", "stores.migrations.env",
     "stores.migrations.versions", "stores.migrations.versions.r0001_initial",
     "stores.migrations.versions.r0002_dead_letters", "stores.sql_errors", "stores.sql_setup",
     "stores.sql_dead_letters", "stores.sql_lock",
     "stores.write_queue", "stores.write_loop", "stores.write_behind", "stores.sql_push",
     "push.service", "push.delivery", "stores.sql_push_outbox",
     # the senders (other engineers own them; placed here so the fitness test covers them)
     "push.payload", "push.httpclient", "push.vapid", "push.webpush", "push.fcm_auth", "push.fcm",
     "push.apns_token", "push.apns",
     "stores.migrations.versions.r0003_push", "stores.sql_push_preferences",
     "stores.migrations.versions.r0004_push_preferences"},
    # the parts of a node
    {"node.connection", "node.collector", "publish.pipeline", "publish.handlers", "rooms.registry",
     "websocket.commands",
     "rest.models", "limits.events", "limits.http", "contract.frames", "contract.asyncapi"},
    {"push.recipients", "push.dispatch",
     "node.hub", "rooms.history", "rooms.admin", "auth.dependency", "rooms.retention", "rooms.state",
     "rooms.instances",
     "publish.submission",
     "middleware"},
    {"rooms.authorize"},
    {"cluster.control", "publish.publisher", "rooms.membership"},
    {"runtime", "publish.outbox", "auth.gate", "auth.tickets"},
    # the use-case layer: every operation once, for every front end
    {"usecases.caller", "usecases.requests", "usecases.access", "usecases.audit"},
    {"usecases.publishing", "usecases.reading", "usecases.room_admin", "usecases.members",
     "usecases.users", "usecases.push"},
    {"usecases.__init__"},
    # the front ends: adapters over the use cases
    {"websocket.ops", "rest.errors", "rest.push_models"},
    {"rest.push_routes"},
    {"websocket.session", "rest.routes", "rest.tickets", "sse.stream"},
    {"websocket.endpoint", "sse.routes"},
    # the Prometheus exporter (the only importer of prometheus-client), over the runtime
    {"metrics.labels", "metrics.families", "metrics.readings", "metrics.multiprocess"},
    {"metrics.sink", "metrics.sampler"},
    {"metrics.exporter"},
    {"metrics.endpoint", "metrics.build"},
    {"routing"},
    {"dialogue"},
    {"testing.server", "testing.broker_contract", "testing.store_contract", "testing.sse_probe"},
    {"testing", "__init__"},
]
#: what the front ends may not reach into: they call the use cases, never these
BEHIND_THE_USE_CASES = ("rooms.membership", "rooms.history", "rooms.admin", "rooms.state",
                        "rooms.instances",
                        "publish.pipeline", "cluster", "brokers.memory", "brokers.redis", "stores")
FRONT_ENDS = ("websocket", "rest", "sse")
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_name(path: Path) -> str:
    """A module's name in LAYERS: a package's ``__init__`` that defines things has its own
    entry (``usecases.__init__``), one that only names its subpackage's purpose is the package."""
    name = module_name(path)
    if path.name == "__init__.py" and f"{name}.__init__" in LAYER_OF:
        return f"{name}.__init__"
    if path.name == "__init__.py" and not name:
        return "__init__"
    return name


def imported(path: Path, name: str) -> set[str]:
    package_parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package_parts[: len(package_parts) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            if not node.module:
                found.update(".".join([*base, alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dialogue_fastapi"):
            found.add((node.module or "").removeprefix("dialogue_fastapi").lstrip("."))
    return found


SERVER_MODULES = [p for p in PACKAGE.rglob("*.py") if "client" not in p.relative_to(PACKAGE).parts]


@pytest.mark.parametrize("path", SERVER_MODULES, ids=lambda p: module_name(p) or "__init__")
def test_no_upward_imports(path: Path) -> None:
    name = layer_name(path)
    assert name in LAYER_OF, f"{name} has no layer in tests/test_layering.py"
    mine = LAYER_OF[name]
    for target in imported(path, module_name(path)):
        layer = LAYER_OF.get(f"{target}.__init__", LAYER_OF.get(target))
        if layer is not None:
            assert layer <= mine, f"{name} (layer {mine}) imports {target} ({layer})"


def _graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SERVER_MODULES}
    return {name: {t for t in imported(path, name) if t in modules and t != name}
            for name, path in modules.items()}


def test_no_import_cycle() -> None:
    """Modules of one layer may import each other, but never in a loop."""
    graph, done, path = _graph(), set[str](), list[str]()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in path, "import cycle: " + " -> ".join([*path[path.index(name):], name])
        path.append(name)
        for target in sorted(graph[name]):
            visit(target)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_front_ends_call_the_use_cases() -> None:
    """WebSocket, REST and SSE adapters do not reach behind the use-case layer."""
    for name, targets in _graph().items():
        if name.split(".")[0] not in FRONT_ENDS:
            continue
        for target in targets:
            assert not target.startswith(BEHIND_THE_USE_CASES), f"{name} reaches into {target}"


def test_client_is_independent_of_the_server() -> None:
    for path in (PACKAGE / "client").rglob("*.py"):
        for target in imported(path, "client." + module_name(path).removeprefix("client.")):
            top = target.split(".")[0]
            allowed = top == "client" or target in ("core.errors", "core.types", "core")
            assert allowed, f"{path.name} imports server module {target}"


RUNTIME_PARTS = re.compile(r"\b(?:rt|runtime|self\.rt|self\._rt)\.(broker|hub|registry|publisher|membership|"
                           r"history|admin|writer|store|states|control|outbox|retention)\b")


def test_front_ends_reach_no_part_of_the_runtime() -> None:
    """The runtime is the composition root: front ends ask it for a connection's lifecycle
    (connected, disconnected, readiness, live connections), never for one of its parts."""
    for folder in FRONT_ENDS:
        for path in (PACKAGE / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                found = RUNTIME_PARTS.search(line)
                assert found is None, f"{path.name}:{number} reaches into the runtime's {found[1]}"
