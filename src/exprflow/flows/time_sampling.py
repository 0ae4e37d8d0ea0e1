"""Distributions of flow time ``t`` during training, chosen by name from :data:`TIME_SAMPLERS`.

- ``"uniform"``: ``t ~ U[0, 1)``.
- ``"logit_normal"``: ``t = sigmoid(m + s * n)``, ``n ~ N(0, 1)``; puts more weight on intermediate times
  (Esser et al., "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis", 2024, SD3).
  Its median is ``sigmoid(m)`` (0.5 for the default ``m = 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from exprflow.registry import Registry

TIME_SAMPLERS: Registry = Registry("time sampler")


@TIME_SAMPLERS.register("uniform")
@dataclass(frozen=True)
class UniformTimeSampler:
    """``t ~ U[0, 1)``."""

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> Tensor:
        """Draw ``n`` times as a float32 tensor ``(n,)``."""
        return torch.rand(n, generator=generator, device=device)


@TIME_SAMPLERS.register("logit_normal")
@dataclass(frozen=True)
class LogitNormalTimeSampler:
    """``t = sigmoid(mean + std * n)`` with ``n ~ N(0, 1)``; values lie in (0, 1)."""

    mean: float = 0.0
    std: float = 1.0

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> Tensor:
        """Draw ``n`` times as a float32 tensor ``(n,)``."""
        z = torch.randn(n, generator=generator, device=device)
        return torch.sigmoid(self.mean + self.std * z)
