"""Exponential moving average (EMA) of model weights, for evaluation and sampling.

After ``n`` previous updates, one update does, for every floating-point parameter and buffer ``p``::

    d = min(decay, (1 + n) / (10 + n))          # warm-up: early averages follow the weights closely
    shadow = d * shadow + (1 - d) * p

Non-floating buffers (e.g. integer counters) are copied. Shadows are float32 (or float64 if the weight
is float64) copies on the weight's device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn


def _named_state(model: nn.Module) -> dict[str, Tensor]:
    """Parameters and buffers by name (the tensors themselves, not copies)."""
    state = dict(model.named_parameters())
    state.update(dict(model.named_buffers()))
    return state


def _shadow_copy(x: Tensor) -> Tensor:
    x = x.detach()
    if x.is_floating_point() and x.dtype != torch.float64:
        return x.float().clone()
    return x.clone()


class EMA:
    """Shadow copy of a model's weights updated as an exponential moving average.

    Parameters
    ----------
    model
        the model whose parameters and buffers are averaged.
    decay
        the long-run decay (e.g. 0.999); warm-up uses ``min(decay, (1 + n) / (10 + n))``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow: dict[str, Tensor] = {k: _shadow_copy(v) for k, v in _named_state(model).items()}

    def current_decay(self) -> float:
        """Decay the next :meth:`update` will use."""
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow towards the model's current weights."""
        d = self.current_decay()
        state = _named_state(model)
        averaged, targets = [], []
        for name, shadow in self.shadow.items():
            value = state[name].detach()
            if shadow.is_floating_point():
                averaged.append(shadow)
                targets.append(value.to(shadow.dtype))
            else:
                shadow.copy_(value)
        if averaged:
            torch._foreach_lerp_(averaged, targets, 1.0 - d)  # shadow += (1 - d) (p - shadow)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's parameters and buffers with the shadow (cast to their dtypes)."""
        state = _named_state(model)
        for name, shadow in self.shadow.items():
            state[name].copy_(shadow)

    @contextmanager
    def swap(self, model: nn.Module) -> Iterator[nn.Module]:
        """Context manager: evaluate ``model`` with the EMA weights, restore its own weights afterwards."""
        backup = {k: v.detach().clone() for k, v in _named_state(model).items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                state = _named_state(model)
                for name, value in backup.items():
                    state[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """``{"decay", "num_updates", "shadow"}``; loadable with ``torch.load(weights_only=True)``."""
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; shadow names must match the model's."""
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state does not match the model; mismatched names: {sorted(missing)}")
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for name, value in state["shadow"].items():
            self.shadow[name] = value.detach().to(self.shadow[name].device, self.shadow[name].dtype).clone()
