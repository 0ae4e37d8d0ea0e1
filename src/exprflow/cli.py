"""Command-line interface: the ``exprflow`` group; every command lives in a module of
:mod:`exprflow.commands` (demo and fit, generate and embed, evaluate, ...), found at start-up.

User errors (bad data, bad options) print one paragraph to stderr and exit with code 2; no traceback.
"""

from __future__ import annotations

import logging
import sys

import click

from exprflow.errors import ExprflowInputError

logger = logging.getLogger("exprflow")


class _Group(click.Group):
    """Turns :class:`ExprflowInputError` into a clean message worded for the CLI (flags) and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ExprflowInputError as exc:
            click.echo(f"error: {exc.cli_message()}", err=True)
            sys.exit(2)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("exprflow").setLevel(logging.INFO)
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric", "numba", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Also log third-party INFO messages.")
@click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N",
              help="PyTorch threads for training and sampling (default: 1 for small flow states, the "
                   "available cores for wide steps; exprflow.settings.num_threads).")
@click.version_option(package_name="exprflow")
def cli(verbose: bool, threads: int | None) -> None:
    """exprflow: generative models of single-cell gene expression (rectified flows)."""
    from exprflow.threads import settings

    _configure_logging(verbose)
    settings.num_threads = threads


def _add_discovered_commands() -> None:
    from exprflow.commands import discover_commands

    for command in discover_commands():
        cli.add_command(command)


_add_discovered_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="exprflow")


if __name__ == "__main__":
    main()
