"""The layering contract: imports only point down.

    pipelines/        Dagster wiring, commands, sources        may import everything below
    assets/ quality/  what gets built and how it is checked    may import each other and storage/
    storage/          resources, lake layout, atomic writes    imports no other layer
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
ALLOWED = {
    "storage": {"storage"},
    "assets": {"storage", "assets", "quality"},
    "quality": {"storage", "assets", "quality"},
    "pipelines": {"storage", "assets", "quality", "pipelines"},
}


def first_party_imports(source: str) -> set[str]:
    """The top-level project packages a module imports, anywhere in it (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


def violations(layer: str, source: str) -> set[str]:
    return first_party_imports(source) - ALLOWED[layer]


MODULES = sorted(p for layer in ALLOWED for p in (ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_imports_point_down(module: Path):
    layer = module.relative_to(ROOT).parts[0]
    assert not violations(layer, module.read_text()), (
        f"{module.relative_to(ROOT)} ({layer}/) imports a higher layer: {violations(layer, module.read_text())}")


def test_the_contract_catches_an_upward_import():
    assert violations("assets", "def f():\n    from pipelines.build import build_everything\n") == {"pipelines"}
    assert violations("storage", "import assets.raw\n") == {"assets"}
    assert violations("quality", "from storage.layout import RawLayout\nimport polars\n") == set()
