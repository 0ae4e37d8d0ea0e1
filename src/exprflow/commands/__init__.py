"""Sub-commands that live in their own modules (one concern each), found at start-up.

Every module in this package that defines ``COMMANDS`` (a list of ``click.Command`` or
``click.Group``) has them added to the ``exprflow`` group by :func:`exprflow.cli.main`'s group. Keep
heavy imports (torch, anndata) inside the command functions, so ``exprflow --help`` stays fast.
User errors are raised as :class:`exprflow.errors.ExprflowInputError` (exit code 2, no traceback).
"""

from __future__ import annotations

import importlib
import pkgutil

import click


def discover_commands() -> list[click.Command]:
    """The ``COMMANDS`` of every module of this package, in module-name order."""
    found: list[click.Command] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(module, "COMMANDS", []))
    return found
