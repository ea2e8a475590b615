"""The docs stay true to the code: generated pages are current, every op,
error code and close code the server uses is described in docs/protocol.md."""

import importlib.util
from pathlib import Path

from dialogue_fastapi.core.errors import ERRORS_BY_CODE, CloseCode
from dialogue_fastapi.websocket.ops import OPS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_config", DOCS / "gen_config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_generated_from_the_models() -> None:
    generated = load_generator().render()
    assert (DOCS / "configuration.md").read_text() == generated, (
        "docs/configuration.md is stale: run python docs/gen_config.py"
    )


def test_protocol_page_names_every_op_error_and_close_code() -> None:
    text = (DOCS / "protocol.md").read_text()
    for op in OPS:
        assert f"| `{op}` |" in text, f"op {op} is not in docs/protocol.md"
    for code in ERRORS_BY_CODE:
        assert f"| `{code}` |" in text, f"error code {code} is not in docs/protocol.md"
    codes = [v for k, v in vars(CloseCode).items() if k.isupper() and isinstance(v, int)]
    for close in codes:
        assert f"| {close} |" in text, f"close code {close} is not in docs/protocol.md"
