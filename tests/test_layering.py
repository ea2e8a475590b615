"""Imports flow one way: a module never imports from a higher layer (CONVENTIONS.md)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dialogue_fastapi"

LAYERS: list[set[str]] = [
    {"errors", "types", "rules"},
    {"config_env", "config", "events"},
    {"brokers.base", "stores.base", "hooks", "origins", "background", "nodelay", "outages", "exit_signal",
     "publish_lane", "sse_cursor", "log_redaction"},
    {"brokers.memory", "brokers", "brokers.redis", "brokers.redis_scripts", "brokers.redis_presence",
     "brokers.redis_subscriber", "brokers.redis_presence_scripts", "brokers.redis_liveness",
     "brokers.redis_options", "brokers.redis_pipeline",
     "stores.memory", "stores", "connection", "pipeline",
     "handlers", "rooms", "commands", "rest_models", "asyncapi_frames", "asyncapi", "rate_limit", "http_limits",
     # the SQL store and the write-behind queue (SQLAlchemy only in stores.sql*/migrat*)
     "stores.sql_schema", "stores.sql_engine", "stores.sql_queries", "stores.sql_outbox",
     "stores.sql", "stores.migrate", "stores.migrations", "stores.migrations.env",
     "stores.migrations.versions", "stores.migrations.versions.r0001_initial",
     "stores.migrations.versions.r0002_dead_letters", "stores.sql_errors", "stores.sql_setup",
     "stores.sql_dead_letters", "stores.sql_lock",
     "stores.write_queue", "stores.write_loop", "stores.write_behind"},
    {"hub", "history", "room_admin", "auth", "retention", "room_state", "middleware"},
    {"control", "publisher", "membership"},
    {"runtime", "outbox", "auth_gate", "tickets"},
    {"ops", "session", "persistence_api"},
    {"rest"},
    {"ticket_routes"},
    {"sse_stream", "sse"},
    {"routing"},
    {"dialogue"},
    {"testing.server", "testing.broker_contract", "testing.store_contract", "testing.sse_probe"},
    {"testing", ""},
]
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


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
    name = module_name(path)
    assert name in LAYER_OF, f"{name} has no layer in tests/test_layering.py"
    mine = LAYER_OF[name]
    for target in imported(path, name):
        if target in LAYER_OF:
            assert LAYER_OF[target] <= mine, f"{name} (layer {mine}) imports {target} ({LAYER_OF[target]})"


def test_client_is_independent_of_the_server() -> None:
    for path in (PACKAGE / "client").rglob("*.py"):
        for target in imported(path, "client." + module_name(path).removeprefix("client.")):
            top = target.split(".")[0]
            assert top in {"client", "errors", "types"}, f"{path.name} imports server module {target}"
