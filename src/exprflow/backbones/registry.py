"""The backbone registry: ``BACKBONES.build("mlp", dim=..., n_conditions=..., **kw)``."""

from __future__ import annotations

from exprflow.registry import Registry

BACKBONES: Registry = Registry("backbone")
