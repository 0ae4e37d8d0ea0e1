"""Errors that users can act on.

``ExprflowInputError`` marks a problem with the user's input or options. Its message says what is
wrong and how to fix it, in the words of the Python API (keyword arguments such as ``layer=None``).
The CLI prints :meth:`ExprflowInputError.cli_message` instead: the same paragraph with every keyword
argument of :data:`CLI_FLAGS` written as the command-line flag that sets it, and exits with code 2
(no traceback).
"""

from __future__ import annotations

import re

#: Python keyword argument -> how the command line says it: ``{value: words}`` for values with their
#: own wording (``None`` written as the Python literal), ``"*"`` for any other value (``{}`` is the value),
#: ``"name"`` for the keyword named without a value (``condition_key 'x' is not a column``).
CLI_FLAGS: dict[str, dict[str, str]] = {
    "overwrite": {"True": "--overwrite", "False": "no --overwrite"},
    "resume": {"True": "--resume", "False": "no --resume"},
    "layer": {"None": "no --layer", "*": "--layer {}"},
    "condition_key": {"None": "no --condition-key", "*": "--condition-key {}", "name": "--condition-key"},
    "time_key": {"None": "no --time-key", "*": "--time-key {}", "name": "--time-key"},
    "control_group": {"*": "--control-group {}", "name": "--control-group"},
    "require_counts": {"False": "--model trajectory --model-kwargs '{\"representation\": \"gaussian\"}'"},
    "representation": {"*": "--model-kwargs '{{\"representation\": \"{}\"}}'"},
    "conditions": {"*": "--like FILE (as many cells per condition level as FILE holds)"},
    "n_cells": {"*": "--n-cells {}", "name": "--n-cells"},
    "batch_size": {"*": "--batch-size {}", "name": "--batch-size"},
    "vae_steps": {"*": "--vae-steps {}", "name": "--vae-steps"},
    "flow_steps": {"*": "--flow-steps {}", "name": "--flow-steps"},
    "max_steps": {"*": "--max-steps {}", "name": "--max-steps"},
    "max_epochs": {"*": "--max-epochs {}", "name": "--max-epochs"},
    "chunk_size": {"*": "--chunk-size {}", "name": "--chunk-size"},
    "backbone_kwargs": {"*": "--backbone-kwargs '{}'"},
    "on_unknown": {"'drop'": "--drop-unknown-genes"},
    "seed": {"*": "--seed {}"},
}

_VALUE = r"(?:True|False|None|'[^']*'|\"[^\"]*\"|\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}|\[[^\]]*\]|[\w.+-]+)"
_KEYWORD = re.compile(r"\b(" + "|".join(CLI_FLAGS) + r")=(" + _VALUE + r")(?:\s*\((?:CLI:\s*)?--[\w-]+\))?")
_NAMED = re.compile(r"(?<![\w.'\"\[])(" + "|".join(k for k, v in CLI_FLAGS.items() if "name" in v) + r")\b(?!=)")


def _flag(match: re.Match) -> str:
    words, value = CLI_FLAGS[match.group(1)], match.group(2)
    if value in words:
        return words[value]
    if "*" not in words:
        return match.group(0)
    bare = value[1:-1] if value[:1] in "'\"" and value[-1:] == value[:1] else value
    if match.group(1) == "backbone_kwargs":  # a Python dict written as JSON
        bare = bare.replace("'", '"')
    return words["*"].format(bare)


def cli_wording(message: str) -> str:
    """``message`` with the keyword arguments of :data:`CLI_FLAGS` written as command-line flags."""
    return _NAMED.sub(lambda m: CLI_FLAGS[m.group(1)]["name"], _KEYWORD.sub(_flag, message))


class ExprflowInputError(ValueError):
    """Bad input data or options; the message explains what is wrong and how to fix it."""

    def cli_message(self) -> str:
        """The message as the command line prints it (flags instead of keyword arguments)."""
        return cli_wording(str(self))
