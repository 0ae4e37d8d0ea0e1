"""Name -> component registries.

Backbones, couplings, time samplers, solvers, likelihoods and tokenizers are chosen by name, never by
if/elif chains. A registry maps a lower-case name to a factory::

    BACKBONES = Registry("backbone")

    @BACKBONES.register("mlp")
    class MLPBackbone(nn.Module): ...

    BACKBONES.build("mlp", dim=11, n_conditions=3, hidden=64)   # -> MLPBackbone(...)
    BACKBONES.get("mlp")                                       # -> MLPBackbone
    BACKBONES.names()                                          # -> ["mlp", ...]

:meth:`Registry.build` is the one place where the keyword options of an entry are checked: they are
read once from the entry's signature, and an unknown option is refused with the list of valid ones.
This module is the only one in exprflow that reads signatures (:mod:`inspect`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Collection, Generic, Mapping, TypeVar

from exprflow.errors import ExprflowInputError

T = TypeVar("T")

_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def keyword_parameters(func: Callable) -> frozenset[str] | None:
    """Names of the keyword arguments ``func`` (a function or a class) accepts.

    Parameters
    ----------
    func
        A function, method or class (its ``__init__`` without ``self``).

    Returns
    -------
    frozenset of str or None
        The names, or ``None`` when ``func`` takes ``**kwargs`` (any name is accepted).
    """
    params = inspect.signature(func).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in _KEYWORD_KINDS and p.name != "self")


class Registry(Generic[T]):
    """A named collection of factories of one kind (e.g. all backbones).

    Parameters
    ----------
    kind
        What the entries are, as written in error messages (``"backbone"``, ``"solver"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._options: dict[str, frozenset[str] | None] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name`` (lower-case, unique)."""
        key = name.lower()

        def decorator(obj: T) -> T:
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the factory registered as ``name``; a clear error lists the choices otherwise."""
        key = str(name).lower()
        if key not in self._items:
            raise ExprflowInputError(
                f"Unknown {self.kind} {name!r}. Choose one of: {', '.join(self.names())}."
            )
        return self._items[key]

    def options(self, name: str) -> frozenset[str] | None:
        """Keyword options of the entry ``name`` (read once from its signature); ``None``: any."""
        key = str(name).lower()
        if key not in self._options:
            self._options[key] = keyword_parameters(self.get(name))
        return self._options[key]

    def check_options(self, name: str, kwargs: Mapping[str, Any], *, reserved: Collection[str] = ()) -> None:
        """Refuse keyword options the entry ``name`` does not take.

        Parameters
        ----------
        name
            A registered name.
        kwargs
            The options to check.
        reserved
            Options the caller supplies itself (e.g. a backbone's ``dim``): neither listed as valid nor
            accepted in ``kwargs``.

        Raises
        ------
        ExprflowInputError
            An unknown name (listing the registered names) or unknown options (listing the valid ones).
        """
        valid = self.options(name)
        if valid is None:
            return
        valid = valid - set(reserved)
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise ExprflowInputError(
                f"{self.kind} {name!r} has no option(s) {unknown}; valid: {sorted(valid)}."
            )

    def build(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Build the entry ``name`` with ``args`` and ``kwargs``, checked by :meth:`check_options` first.

        Parameters
        ----------
        name
            A registered name (case-insensitive).
        *args, **kwargs
            Passed to the registered factory.

        Returns
        -------
        object
            What the factory returns (e.g. a backbone module).

        Raises
        ------
        ExprflowInputError
            An unknown name or an unknown keyword option, with the valid choices.
        """
        self.check_options(name, kwargs)
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return str(name).lower() in self._items
