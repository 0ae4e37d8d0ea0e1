"""Registry.build: entries built by name, unknown names and options refused with the valid choices."""
import ast
from pathlib import Path

import pytest

from exprflow.errors import ExprflowInputError
from exprflow.registry import Registry


def _registry() -> Registry:
    things = Registry("widget")

    @things.register("box")
    class Box:
        def __init__(self, width: int, *, depth: int = 1) -> None:
            self.width, self.depth = width, depth

    @things.register("bag")
    def bag(**kwargs):
        return kwargs

    return things


def test_build_passes_arguments():
    box = _registry().build("BOX", 3, depth=2)
    assert (box.width, box.depth) == (3, 2)
    assert _registry().build("bag", anything=1) == {"anything": 1}  # **kwargs: any option


def test_build_refuses_unknown_option_listing_valid_ones():
    with pytest.raises(ExprflowInputError, match=r"widget 'box' has no option\(s\) \['colour'\]; "
                                                  r"valid: \['depth', 'width'\]"):
        _registry().build("box", 3, colour="red")


def test_build_refuses_unknown_name_listing_registered_ones():
    with pytest.raises(ExprflowInputError, match="Unknown widget 'crate'. Choose one of: bag, box."):
        _registry().build("crate")


def test_check_options_reserved_are_neither_valid_nor_accepted():
    things = _registry()
    things.check_options("box", {"depth": 2}, reserved=("width",))
    with pytest.raises(ExprflowInputError, match=r"\['width'\]; valid: \['depth'\]"):
        things.check_options("box", {"width": 2}, reserved=("width",))


def test_real_registries_build_by_name():
    from exprflow.backbones import BACKBONES
    from exprflow.sampling import SOLVERS

    net = BACKBONES.build("mlp", dim=4, n_conditions=0, hidden=8, depth=1)
    assert sum(p.numel() for p in net.parameters()) > 0
    assert type(SOLVERS.build("heun")).__name__.lower().startswith("heun")
    with pytest.raises(ExprflowInputError, match="valid: .*hidden"):
        BACKBONES.build("mlp", dim=4, n_conditions=0, hiden=8)


def test_no_command_module_imports_inspect():
    commands = Path(__file__).parents[1] / "src" / "exprflow" / "commands"
    offenders = []
    for path in sorted(commands.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "inspect" or n.startswith("inspect.") for n in names):
                offenders.append(path.name)
    assert list(commands.glob("*.py")) and offenders == []
