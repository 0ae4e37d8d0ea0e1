"""Renamed options: the old spelling keeps working for one release, with a ``DeprecationWarning``."""

from __future__ import annotations

import warnings
from typing import Any

from exprflow.errors import ExprflowInputError


def renamed(new: str, value: Any, old: str, old_value: Any, *, default: Any = None, stacklevel: int = 3) -> Any:
    """The value of option ``new``, taken from its deprecated spelling ``old`` when that one was given.

    Parameters
    ----------
    new, value
        The option's current name and the value passed under it.
    old, old_value
        The deprecated name and the value passed under it (``None``: not given).
    default
        ``new``'s default: giving both spellings is refused unless ``value`` is still the default.
    stacklevel
        Passed to :func:`warnings.warn`, so the warning points at the caller's line.

    Returns
    -------
    object
        ``old_value`` when given (after a ``DeprecationWarning``), else ``value``.

    Raises
    ------
    ExprflowInputError
        Both spellings given with different values.
    """
    if old_value is None:
        return value
    if value != default and value != old_value:
        raise ExprflowInputError(f"Give {new}= only ({old}= is its deprecated name), not both.")
    warnings.warn(f"{old}= is deprecated; use {new}= (same meaning). {old}= will be removed in the next release.",
                  DeprecationWarning, stacklevel=stacklevel)
    return old_value
