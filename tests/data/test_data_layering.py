"""The loaders of the data layer import each other at module level, one way only (no hidden cycle)."""
import ast
from pathlib import Path

DATA = Path(__file__).parents[2] / "src" / "exprflow" / "data"
ORDER = ["cell_dataset", "block_shuffle", "backed", "loaders"]  # each may import only those before it


def _imports(name: str) -> tuple[set[str], set[str]]:
    """exprflow.data modules imported by ``name`` at module level and inside functions."""
    tree = ast.parse((DATA / f"{name}.py").read_text())
    top, nested = set(), set()
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for module in (n for n in names if n.startswith("exprflow.data.")):
            (top if node in tree.body else nested).add(module.rsplit(".", 1)[1])
    return top, nested


def test_loader_modules_import_downwards_at_module_level_only():
    for i, name in enumerate(ORDER):
        top, nested = _imports(name)
        assert not nested & set(ORDER), f"{name} hides an import of {nested & set(ORDER)} in a function"
        assert not top & set(ORDER[i:]), f"{name} imports {top & set(ORDER[i:])}, which come after it"


def test_no_empty_benchmark_package():
    assert not (DATA.parent / "benchmark").exists()
