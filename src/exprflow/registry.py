"""Name -> component registries.

Backbones, couplings, time samplers, solvers and (later) likelihoods and tokenizers are chosen by
name, never by if/elif chains. A registry maps a lower-case name to a factory::

    BACKBONES = Registry("backbone")

    @BACKBONES.register("mlp")
    class MLPBackbone(nn.Module): ...

    BACKBONES.get("mlp")      # -> MLPBackbone
    BACKBONES.names()         # -> ["mlp", ...]
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from exprflow.errors import ExprflowInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of factories of one kind (e.g. all backbones)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

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

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return str(name).lower() in self._items
