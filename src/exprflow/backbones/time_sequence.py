"""The velocity network of a *sequence* flow: a sample is a whole trajectory ``(B, T, d)``.

The time course's time axis is the sequence axis; flow time enters every block by
adaLN (FiLM of the LayerNorm, Peebles & Xie 2023) through :class:`~exprflow.backbones.sequence.SequenceStack`::

    inputs per position   xt (B, T, d)            the flow's state of the trajectory
                          ctx (B, T, d), m (B, T)  observed steps (values where m = 1, zeros elsewhere)
                          tau (B, T)               the position's physical time, scaled to [0, 1]
    h = Linear([xt, ctx, m]) + Linear(sinusoidal(tau))                       (B, T, W)
    c = TimeEmbedding(t) + ConditionEmbedding(cond);  SiLU(c)                (B, W)   per trajectory
    h = SequenceStack(h, SiLU(c))     depth adaLN-Zero blocks, mixer over T  (B, T, W)
    v = Linear(h)  (zero-initialised)                                        (B, T, d)

Mixers by name (:data:`TIME_MIXERS`): ``s4d``, ``hyena``, ``mamba`` (state-space / long convolution,
linear or ``L log L`` in T), ``transformer`` (self-attention, quadratic in T) and ``hybrid`` (SSM and
attention blocks alternating, seed section 9.4). ``causal=True`` makes position ``k`` see only
positions ``<= k`` (forecasting); the default is bidirectional (interpolation, inpainting).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from exprflow.backbones import ssm as _ssm  # noqa: F401  (registers the SSM mixers)
from exprflow.backbones import transformer as _attention  # noqa: F401  (registers "attention")
from exprflow.backbones.embeddings import ConditionEmbedding, TimeEmbedding, broadcast_time, sinusoidal_embedding
from exprflow.backbones.sequence import SequenceStack
from exprflow.errors import ExprflowInputError

#: backbone name -> the mixer of every block (a list alternates; ``hybrid`` = SSM, attention, SSM, ...)
TIME_MIXERS: dict[str, list[str]] = {
    "s4d": ["s4d"],
    "hyena": ["hyena"],
    "mamba": ["mamba"],
    "transformer": ["attention"],
    "hybrid": ["s4d", "attention"],
}

#: options that suit short time axes (a few to hundreds of steps) better than the gene-axis defaults
DEFAULT_MIXER_KWARGS: dict[str, dict] = {"s4d": {"dt_min": 1e-2, "dt_max": 1.0}, "attention": {"n_heads": 4}}


def block_mixers(backbone: str, depth: int) -> list[str]:
    """The mixer name of each of ``depth`` blocks for a backbone name of :data:`TIME_MIXERS`."""
    if backbone not in TIME_MIXERS:
        raise ExprflowInputError(f"Unknown time-axis backbone {backbone!r}; choose one of {sorted(TIME_MIXERS)}.")
    cycle = TIME_MIXERS[backbone]
    return [cycle[i % len(cycle)] for i in range(depth)]


@dataclass(frozen=True)
class TimeSequenceConfig:
    """Hyperparameters of a :class:`TimeSequenceBackbone` (saved with the model)."""

    dim: int
    backbone: str = "s4d"
    n_conditions: int = 0
    width: int = 64
    depth: int = 4
    mlp_ratio: float = 2.0
    time_dim: int = 64
    dropout: float = 0.0
    causal: bool = False
    mixer_kwargs: dict = field(default_factory=dict)


class TimeSequenceBackbone(nn.Module):
    """Velocity of a trajectory ``(B, T, d)`` with a mixer over the time axis (see the module docstring).

    Parameters
    ----------
    dim
        latent dimension d of one time step.
    backbone
        a name of :data:`TIME_MIXERS` (``s4d``, ``hyena``, ``mamba``, ``transformer``, ``hybrid``).
    n_conditions
        condition codes per trajectory; code ``n_conditions`` is the null condition.
    width, depth, mlp_ratio, dropout
        the adaLN-Zero blocks.
    time_dim
        width of the sinusoidal codes (flow time and physical time).
    causal
        position k sees positions <= k only.
    mixer_kwargs
        options per mixer name, e.g. ``{"s4d": {"state_dim": 32}, "mamba": {"scan": "chunked"}}``;
        merged over :data:`DEFAULT_MIXER_KWARGS`.
    """

    def __init__(self, dim: int, backbone: str = "s4d", n_conditions: int = 0, width: int = 64, depth: int = 4,
                 mlp_ratio: float = 2.0, time_dim: int = 64, dropout: float = 0.0, causal: bool = False,
                 mixer_kwargs: dict | None = None) -> None:
        super().__init__()
        self.config = TimeSequenceConfig(dim, backbone, n_conditions, width, depth, mlp_ratio, time_dim, dropout,
                                         causal, dict(mixer_kwargs or {}))
        self.dim, self.n_conditions, self.time_dim = dim, n_conditions, time_dim
        names = block_mixers(backbone, depth)
        kwargs = {name: {**DEFAULT_MIXER_KWARGS.get(name, {}), **(mixer_kwargs or {}).get(name, {})} for name in names}
        self.in_proj = nn.Linear(2 * dim + 1, width)
        self.position_embed = nn.Linear(time_dim, width)
        self.time_embed = TimeEmbedding(width, freq_dim=time_dim)
        self.cond_embed = ConditionEmbedding(n_conditions, width)
        self.stack = SequenceStack(width, depth, names, causal=causal, mlp_ratio=mlp_ratio, dropout=dropout,
                                   mixer_kwargs=kwargs)
        self.head = nn.Linear(width, dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, t: Tensor | float, positions: Tensor, context: Tensor | None = None,
                mask: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        """Velocity ``(B, T, d)`` of states ``x (B, T, d)`` at flow time ``t``.

        Parameters
        ----------
        positions
            physical time of each step in [0, 1], ``(T,)`` or ``(B, T)``.
        context, mask
            observed steps ``(B, T, d)`` and ``(B, T)`` (1 = observed); None = nothing observed.
        cond
            condition codes ``(B,)`` or None (the null condition).
        """
        batch, length, _ = x.shape
        if mask is None:
            mask = x.new_zeros(batch, length)
            context = torch.zeros_like(x)
        m = mask.to(x.dtype)[..., None]  # (B, T, 1)
        h = self.in_proj(torch.cat([x, context * m, m], dim=-1))  # (B, T, W)
        tau = positions.to(x.dtype).expand(batch, length).reshape(-1)  # (B*T,)
        code = sinusoidal_embedding(tau, self.time_dim, scale=100.0).reshape(batch, length, -1)
        h = h + self.position_embed(code.to(h.dtype))
        t = broadcast_time(t, batch, x)
        codes = self.cond_embed.codes(cond, batch, x.device)
        c_act = F.silu(self.time_embed(t) + self.cond_embed(codes))  # (B, W)
        return self.head(self.stack(h, c_act))
