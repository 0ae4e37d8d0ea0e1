"""Velocity networks of :class:`~exprflow.models.PerturbationFlow`: the flow ``z_ctrl -> z_pert``.

The flow runs from a control cell's latent state ``x0 = s_ctrl`` (t = 0) to its paired perturbed state
``x1 = s_pert`` (t = 1). Three ways to read the 2-step sequence ``[s_ctrl, x_t]``:

- ``markov`` (the "conditional latent flow" baseline): ``v(x_t, t, c)``, the registered MLP backbone on
  ``x_t`` alone (the start of the path is forgotten);
- ``mlp``: the MLP backbone on the concatenated sequence ``[s_ctrl, x_t]`` (width ``2 d``); the velocity is
  the second half of its output;
- a sequence mixer (``s4d``, ``mamba``, ``hyena``, ``attention``/``transformer``): the two steps as a
  length-2 sequence through :class:`~exprflow.backbones.sequence.SequenceStack` (causal: step 1 sees
  step 0), read out at step 1::

      tokens (B, 2, d) -> Linear(d, width) + position (2, width) -> SequenceStack(width, depth, mixer)
      -> h[:, 1] (B, width) -> zero-initialised Linear(width, d) + a(c) * x_t + b(c)

Every network is called as ``net(x_t, t, cond, source)`` with ``cond`` the perturbation code
(``n_conditions`` = null code for classifier-free guidance). :class:`SourceBound` fixes ``source`` so the
shared samplers and guidance (``model(x, t, cond)``) apply unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from exprflow.backbones import BACKBONES
from exprflow.backbones.embeddings import ConditionEmbedding, TimeEmbedding, broadcast_time
from exprflow.backbones.sequence import SequenceStack
from exprflow.errors import ExprflowInputError

#: backbone names of the CLI / config -> sequence mixer over the 2-step axis
MIXER_OF_BACKBONE = {"s4d": "s4d", "mamba": "mamba", "hyena": "hyena", "transformer": "attention",
                     "attention": "attention"}
DEFAULT_KWARGS = {"mlp": {"hidden": 128, "depth": 3}, "sequence": {"width": 64, "depth": 2}}


class PairMLP(nn.Module):
    """The MLP backbone on ``[source, x_t]`` (``source_token=True``) or on ``x_t`` alone (``False``)."""

    def __init__(self, dim: int, n_conditions: int, source_token: bool = True, **mlp_kwargs) -> None:
        super().__init__()
        self.dim, self.n_conditions, self.source_token = dim, n_conditions, source_token
        self.mlp = BACKBONES.get("mlp")(dim=2 * dim if source_token else dim, n_conditions=n_conditions, **mlp_kwargs)

    def forward(self, x: Tensor, t: Tensor | float, cond: Tensor | None, source: Tensor) -> Tensor:
        if not self.source_token:
            return self.mlp(x, t, cond)
        return self.mlp(torch.cat([source, x], dim=-1), t, cond)[:, self.dim :]


class PairSequence(nn.Module):
    """``[source, x_t]`` as a length-2 sequence through a :class:`SequenceStack` (module docstring)."""

    def __init__(self, dim: int, n_conditions: int, mixer: str, width: int = 64, depth: int = 2,
                 mlp_ratio: float = 2.0, time_dim: int = 64, mixer_kwargs: dict | None = None) -> None:
        super().__init__()
        self.dim, self.n_conditions = dim, n_conditions
        self.input_proj = nn.Linear(dim, width)
        self.position = nn.Parameter(torch.randn(2, width) * 0.02)  # step 0: control, step 1: x_t
        self.time_embed = TimeEmbedding(width, freq_dim=time_dim)
        self.cond_embed = ConditionEmbedding(n_conditions, width)
        self.stack = SequenceStack(width, depth, mixer, causal=True, mlp_ratio=mlp_ratio,
                                   mixer_kwargs={mixer: mixer_kwargs or {}})
        self.output_proj = nn.Linear(width, dim)
        self.skip = nn.Linear(width, 2 * dim)  # a(c) * x_t + b(c), as the MLP backbone's skip path
        for layer in (self.output_proj, self.skip):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, t: Tensor | float, cond: Tensor | None, source: Tensor) -> Tensor:
        batch = x.shape[0]
        t = broadcast_time(t, batch, x)
        c_act = F.silu(self.time_embed(t) + self.cond_embed(self.cond_embed.codes(cond, batch, x.device)))
        tokens = self.input_proj(torch.stack([source, x], dim=1)) + self.position  # (B, 2, width)
        h = self.stack(tokens, c_act)[:, 1]  # (B, width): the step of x_t
        a, b = self.skip(c_act).chunk(2, dim=-1)
        return self.output_proj(h) + a * x + b


def build_pair_network(backbone: str, dim: int, n_conditions: int, source_token: bool,
                       kwargs: dict | None) -> nn.Module:
    """The velocity network for a backbone name (``mlp`` or a sequence mixer); clear errors otherwise."""
    name = str(backbone).lower()
    if name == "mlp":
        options = dict(DEFAULT_KWARGS["mlp"] if kwargs is None else kwargs)
        return PairMLP(dim, n_conditions, source_token=source_token, **_checked(options, PairMLP, name))
    if name not in MIXER_OF_BACKBONE:
        raise ExprflowInputError(
            f"PerturbationFlow backbone must be 'mlp' or a sequence model over the 2-step axis "
            f"({', '.join(sorted(MIXER_OF_BACKBONE))}); got {backbone!r}."
        )
    if not source_token:
        raise ExprflowInputError("source_token=False (the Markov flow) is only defined for backbone='mlp'.")
    options = dict(DEFAULT_KWARGS["sequence"] if kwargs is None else kwargs)
    return PairSequence(dim, n_conditions, MIXER_OF_BACKBONE[name], **_checked(options, PairSequence, name))


def _checked(options: dict, cls: type, name: str) -> dict:
    from exprflow.registry import keyword_parameters

    valid = (BACKBONES.options("mlp") if cls is PairMLP else keyword_parameters(cls)) - {
        "dim", "n_conditions", "mixer", "source_token"}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ExprflowInputError(f"backbone_kwargs {unknown} are not options of the {name!r} pair network; "
                                 f"valid: {sorted(valid)}.")
    return options


class SourceBound(nn.Module):
    """``net(x, t, cond)`` with the control states ``source`` fixed (for ``integrate`` / guidance)."""

    def __init__(self, net: nn.Module, source: Tensor) -> None:
        super().__init__()
        self.net, self.source, self.n_conditions = net, source, net.n_conditions

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        source = self.source if x.shape[0] == self.source.shape[0] else torch.cat([self.source, self.source])
        return self.net(x, t, cond, source)
