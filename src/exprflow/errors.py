"""Errors that users can act on.

``ExprflowInputError`` marks a problem with the user's input or options. Its message says what is
wrong and how to fix it; the CLI prints it as one paragraph and exits with code 2 (no traceback).
"""

from __future__ import annotations


class ExprflowInputError(ValueError):
    """Bad input data or options; the message explains what is wrong and how to fix it."""
