"""Residual MLP backbone with adaLN-Zero conditioning, for state vectors ``x in R^dim``.

The conditioning vector is ``c = TimeEmbedding(t) + ConditionEmbedding(cond)`` (width ``hidden``).
Each residual block follows adaLN-Zero (Peebles & Xie, "Scalable Diffusion Models with Transformers",
2023), written from the paper::

    shift, scale, gate = Linear(SiLU(c))                # zero-initialised -> all three start at 0
    h = x + gate * MLP(LayerNorm(x) * (1 + scale) + shift)   # LayerNorm without affine parameters

so every block starts as the identity map. The final layer is an adaptive LayerNorm (shift, scale from c,
also zero-initialised) followed by the linear ``output_proj``, which is zero-initialised too: a fresh model
outputs the zero velocity.

Shapes: ``x (B, dim)`` -> ``input_proj`` -> ``(B, hidden)`` -> blocks -> ``output_proj`` -> ``(B, dim)``.
``input_proj`` and ``output_proj`` are plain ``nn.Linear`` layers (no normalisation before the input
projection), so callers may exploit their linearity.

Per-dimension skip path (``dim_skip=True``, exprflow's addition): the output layer has rank at most
``hidden``, so when ``hidden < dim`` the velocity lives in a ``hidden``-dimensional subspace and the
noise ``x0`` in the other ``dim - hidden`` directions can never be removed. For a Gaussian direction
the exact rectified-flow velocity is affine in ``x`` with time-dependent coefficients,
``v = a(t) x + b(t)``; the skip path adds exactly that per dimension::

    v = output_proj(h) + a(c) * x + b(c)        # (a, b) = zero-initialised Linear(SiLU(c)) -> (B, 2 dim)

It is cheap (one ``hidden x 2 dim`` product per distinct ``(t, cond)`` pair when sampling) and keeps
the zero-velocity start.

Cells that share ``(t, cond)`` share their modulation. Under ``torch.no_grad()`` (sampling, where all
cells share ``t``) the conditioning MLPs run once per distinct ``(t, cond)`` pair and the result is
gathered; with gradients enabled they run per sample (no scatter-add in the backward pass).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from exprflow.backbones.embeddings import ConditionEmbedding, TimeEmbedding, broadcast_time
from exprflow.backbones.registry import BACKBONES

_LN_EPS = 1e-6


@dataclass(frozen=True)
class MLPBackboneConfig:
    """Hyperparameters of :class:`MLPBackbone` (``MLPBackbone(**asdict(config))`` rebuilds it)."""

    dim: int
    n_conditions: int = 0
    hidden: int = 512
    depth: int = 4
    mlp_ratio: float = 2.0
    time_dim: int = 128
    dropout: float = 0.0
    dim_skip: bool = True


def _modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """Affine modulation of a normalised activation: ``h * (1 + scale) + shift``."""
    return h * (1.0 + scale) + shift


def _gather(mod: Tensor, inverse: Tensor | None) -> Tensor:
    """Expand per-distinct-condition rows ``(U, k)`` to per-sample rows ``(B, k)``.

    A single distinct row stays ``(1, k)`` and broadcasts: materialising it per sample would cost
    ``B x k`` memory traffic per call (``k = 2 dim`` for the skip path), which dominated sampling time.
    """
    if inverse is None or mod.shape[0] == 1:
        return mod
    return mod.index_select(0, inverse)


class AdaLNZeroBlock(nn.Module):
    """``x + gate * MLP(LN(x) * (1 + scale) + shift)``; (shift, scale, gate) = zero-init Linear(SiLU(c))."""

    def __init__(self, hidden: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        inner = int(round(hidden * mlp_ratio))
        self.mlp = nn.Sequential(
            nn.Linear(hidden, inner), nn.GELU(), nn.Dropout(dropout), nn.Linear(inner, hidden)
        )
        self.modulation = nn.Linear(hidden, 3 * hidden)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: Tensor, c_act: Tensor, inverse: Tensor | None = None) -> Tensor:
        """``x (B, hidden)``; ``c_act = SiLU(c)``: ``(B, hidden)``, or ``(U, hidden)`` plus ``inverse``."""
        mod = _gather(self.modulation(c_act), inverse)  # (B, 3 * hidden)
        shift, scale, gate = mod.chunk(3, dim=-1)
        h = F.layer_norm(x, x.shape[-1:], eps=_LN_EPS)
        return x + gate * self.mlp(_modulate(h, shift, scale))


@BACKBONES.register("mlp")
class MLPBackbone(nn.Module):
    """Velocity network ``v(x, t, cond)`` on state vectors: residual MLP blocks with adaLN-Zero.

    Parameters
    ----------
    dim
        width of the state vector (genes or latent dimensions).
    n_conditions
        number of condition codes; code ``n_conditions`` is the null condition.
    hidden
        width of the residual stream and of the conditioning vector.
    depth
        number of residual blocks.
    mlp_ratio
        inner width of each block's MLP as a multiple of ``hidden``.
    time_dim
        width of the sinusoidal time code.
    dropout
        dropout inside each block's MLP.
    dim_skip
        add the per-dimension affine skip path ``a(c) * x + b(c)`` (see module docstring).
    """

    def __init__(
        self,
        dim: int,
        n_conditions: int = 0,
        hidden: int = 512,
        depth: int = 4,
        mlp_ratio: float = 2.0,
        time_dim: int = 128,
        dropout: float = 0.0,
        dim_skip: bool = True,
    ) -> None:
        super().__init__()
        self.config = MLPBackboneConfig(dim, n_conditions, hidden, depth, mlp_ratio, time_dim, dropout, dim_skip)
        self.dim = dim
        self.n_conditions = n_conditions
        self.input_proj = nn.Linear(dim, hidden)
        self.time_embed = TimeEmbedding(hidden, freq_dim=time_dim)
        self.cond_embed = ConditionEmbedding(n_conditions, hidden)
        self.blocks = nn.ModuleList(AdaLNZeroBlock(hidden, mlp_ratio, dropout) for _ in range(depth))
        self.final_modulation = nn.Linear(hidden, 2 * hidden)
        self.output_proj = nn.Linear(hidden, dim)
        self.skip_modulation = nn.Linear(hidden, 2 * dim) if dim_skip else None
        self._init_weights()

    @classmethod
    def small_config(cls) -> dict:
        """Tiny hyperparameters for fast tests."""
        return {"hidden": 32, "depth": 2, "mlp_ratio": 2.0, "time_dim": 16}

    def _init_weights(self) -> None:
        for block in self.blocks:
            for layer in (block.mlp[0], block.mlp[3]):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        nn.init.xavier_uniform_(self.input_proj.weight)
        nn.init.zeros_(self.input_proj.bias)
        # adaLN-Zero: the final modulation and the output layer start at zero.
        for layer in (self.final_modulation, self.output_proj, self.skip_modulation):
            if layer is None:
                continue
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def conditioning(self, t: Tensor, codes: Tensor) -> tuple[Tensor, Tensor | None]:
        """``SiLU(time_emb + cond_emb)`` and the per-sample row index (``None`` when one row per sample).

        ``t (B,)`` and ``codes (B,)``. Without gradients, rows are computed once per distinct
        ``(t, code)`` pair: returns ``(U, hidden)`` and ``inverse (B,)``.
        """
        if torch.is_grad_enabled():
            return F.silu(self.time_embed(t) + self.cond_embed(codes)), None
        t_unique, t_inv = torch.unique(t, return_inverse=True)
        n_codes = self.n_conditions + 1
        key_unique, inverse = torch.unique(t_inv * n_codes + codes, return_inverse=True)
        t_rows = t_unique[torch.div(key_unique, n_codes, rounding_mode="floor")]
        code_rows = key_unique % n_codes
        return F.silu(self.time_embed(t_rows) + self.cond_embed(code_rows)), inverse

    def forward(self, x: Tensor, t: Tensor | float, cond: Tensor | None = None) -> Tensor:
        """``x (B, dim)``, ``t (B,)`` or scalar in [0, 1], ``cond (B,)`` long or None -> ``v (B, dim)``."""
        batch = x.shape[0]
        t = broadcast_time(t, batch, x)
        codes = self.cond_embed.codes(cond, batch, x.device)
        c_act, inverse = self.conditioning(t, codes)  # (B or U, hidden)
        h = self.input_proj(x)  # (B, hidden)
        for block in self.blocks:
            h = block(h, c_act, inverse)
        shift, scale = _gather(self.final_modulation(c_act), inverse).chunk(2, dim=-1)
        h = _modulate(F.layer_norm(h, h.shape[-1:], eps=_LN_EPS), shift, scale)
        v = self.output_proj(h)
        if self.skip_modulation is not None:
            a, b = _gather(self.skip_modulation(c_act), inverse).chunk(2, dim=-1)  # (B, dim) each
            v = v.add_(b).addcmul_(a, x)  # in place: the (B, dim) temporaries dominated sampling time
        return v

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())
