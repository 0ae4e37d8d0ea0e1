"""Several condition attributes at once (cell type x donor x stimulation), packed into one code.

The backbone contract takes one integer code per cell, ``cond (B,)`` with null code ``n_conditions``.
With ``K`` attributes of ``n_1 .. n_K`` levels, each attribute gets one more level, its own *null*
(level ``n_k``), and a combination is packed in mixed radix::

    code = sum_k d_k * prod_{j > k} (n_j + 1),    d_k in [0, n_k]   (d_k = n_k: attribute k unspecified)

so the all-null combination is ``prod_k (n_k + 1) - 1``, the backbone's null code. The backbone's
condition table is replaced by :class:`MultiConditionEmbedding`: one table per attribute (each with its
null row), summed, so an attribute's level means the same thing in every combination and combinations
never seen together in training still have an embedding. Training drops each attribute to its null
independently (:meth:`ConditionSpace.drop`), which trains every marginal model at once: the velocity
with an attribute nulled is the model marginalised over that attribute (classifier-free guidance per
attribute).

Guidance with a weight per attribute (:func:`compositional_velocity`), for specified attributes
``c_1 .. c_m`` in the request's order, ``v(S)`` the velocity with only the attributes in ``S`` set:

- ``"joint"``: ``v(∅) + sum_k w_k (v(c_1..c_k) - v(c_1..c_{k-1}))``, the chain rule
  ``p(x) prod_k p(c_k | x, c_<k)^{w_k}``; all weights 1 gives the plain conditional velocity and equal
  weights ``w`` give ordinary classifier-free guidance at scale ``w``.
- ``"product"``: ``v(∅) + sum_k w_k (v(c_k) - v(∅))``, the product of experts
  ``p(x) prod_k p(c_k | x)^{w_k}`` (compositional classifier-free guidance as in CFGen, Palma et al.
  2024); each attribute's term is evaluated alone, so a combination unseen in training is built from
  attributes seen separately.

Both evaluate their ``m + 1`` velocities in one batched forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as dc_replace

import numpy as np
import torch
from torch import Tensor, nn

from exprflow.backbones.embeddings import ConditionEmbedding
from exprflow.errors import ExprflowInputError

COMPOSITIONS = ("joint", "product")


@dataclass(frozen=True)
class ConditionSpace:
    """Attribute names and their level names; packs/unpacks combinations (see module docstring)."""

    keys: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]

    @property
    def sizes(self) -> np.ndarray:
        """Levels per attribute, without the null level."""
        return np.array([len(lv) for lv in self.levels], dtype=np.int64)

    @property
    def strides(self) -> np.ndarray:
        radix = self.sizes + 1
        return np.concatenate([np.cumprod(radix[::-1])[::-1][1:], [1]]).astype(np.int64)

    @property
    def null_code(self) -> int:
        """The all-null combination, also the number of non-null codes the backbone sees."""
        return int(np.prod(self.sizes + 1) - 1)

    def pack(self, digits: np.ndarray) -> np.ndarray:
        """``(n, K)`` per-attribute codes (``n_k`` = null) -> ``(n,)`` packed codes."""
        return (np.asarray(digits, dtype=np.int64) * self.strides).sum(axis=1)

    def unpack(self, codes: np.ndarray) -> np.ndarray:
        """``(n,)`` packed codes -> ``(n, K)`` per-attribute codes."""
        codes = np.asarray(codes, dtype=np.int64)
        return (codes[:, None] // self.strides) % (self.sizes + 1)

    def key_index(self, key: str) -> int:
        if key not in self.keys:
            raise ExprflowInputError(f"Unknown condition attribute {key!r}; the model knows {list(self.keys)}.")
        return self.keys.index(key)

    def drop(self, cond: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
        """Null each attribute of packed codes ``cond (B,)`` independently with probability ``p``."""
        if p <= 0.0:
            return cond
        strides = torch.as_tensor(self.strides, device=cond.device)
        sizes = torch.as_tensor(self.sizes, device=cond.device)
        digits = (cond[:, None] // strides) % (sizes + 1)
        drop = torch.rand(digits.shape, generator=generator, device=cond.device) < p
        digits = torch.where(drop, sizes.expand_as(digits), digits)
        return (digits * strides).sum(dim=1)

    def keep_only(self, cond: Tensor, keep: Sequence[int]) -> Tensor:
        """Packed codes with every attribute not in ``keep`` set to its null."""
        strides = torch.as_tensor(self.strides, device=cond.device)
        sizes = torch.as_tensor(self.sizes, device=cond.device)
        digits = (cond[:, None] // strides) % (sizes + 1)
        mask = torch.zeros(len(self.keys), dtype=torch.bool, device=cond.device)
        mask[list(keep)] = True
        digits = torch.where(mask, digits, sizes.expand_as(digits))
        return (digits * strides).sum(dim=1)

    def state_dict(self) -> dict:
        return {"keys": list(self.keys), "levels": [list(lv) for lv in self.levels]}

    @classmethod
    def from_state(cls, state: Mapping) -> "ConditionSpace":
        return cls(tuple(state["keys"]), tuple(tuple(lv) for lv in state["levels"]))


class MultiConditionEmbedding(ConditionEmbedding):
    """Packed codes ``(B,)`` -> sum of one embedding per attribute ``(B, out_dim)``, each with a null row.

    A :class:`~exprflow.backbones.ConditionEmbedding` (same ``n_conditions``, ``null_code`` and
    ``codes``) without the one table per code, so a backbone uses it unchanged.
    """

    def __init__(self, space: ConditionSpace, out_dim: int) -> None:
        nn.Module.__init__(self)  # not ConditionEmbedding's: no table with a row per packed code
        self.space = space
        self.n_conditions = space.null_code
        self.tables = nn.ModuleList(nn.Embedding(int(n) + 1, out_dim) for n in space.sizes)
        for table in self.tables:
            nn.init.normal_(table.weight, std=0.02)

    def forward(self, codes: Tensor) -> Tensor:
        strides = torch.as_tensor(self.space.strides, device=codes.device)
        digits = (codes[:, None] // strides) % torch.as_tensor(self.space.sizes + 1, device=codes.device)
        return sum(table(digits[:, k]) for k, table in enumerate(self.tables))


def install_condition_embedding(backbone: nn.Module, space: ConditionSpace) -> nn.Module:
    """Give ``backbone`` (built with ``n_conditions=0``) one embedding per attribute of ``space``."""
    embed = getattr(backbone, "cond_embed", None)
    if embed is None or not hasattr(embed, "table"):
        raise ExprflowInputError(
            f"Backbone {type(backbone).__name__} has no condition table to extend, so it cannot take "
            "several condition keys; use one condition_key or another backbone (e.g. 'mlp')."
        )
    backbone.cond_embed = MultiConditionEmbedding(space, embed.table.embedding_dim)
    backbone.n_conditions = space.null_code
    config = getattr(backbone, "config", None)
    if config is not None and hasattr(config, "n_conditions"):
        backbone.config = dc_replace(config, n_conditions=space.null_code)
    return backbone


def compositional_velocity(model: nn.Module, space: ConditionSpace, cond: Tensor,
                           weights: Mapping[str, float], composition: str = "joint"):
    """``velocity(x, t)`` with a guidance weight per attribute (see module docstring).

    Parameters
    ----------
    model
        backbone whose ``cond_embed`` is a :class:`MultiConditionEmbedding` of ``space``.
    space
        the condition attributes.
    cond
        packed codes ``(B,)``; every cell of a call shares its specified attributes.
    weights
        attribute -> weight; specified attributes not listed get weight 1.
    composition
        ``"joint"`` or ``"product"``.
    """
    from exprflow.flows.guidance import _time_batch

    if composition not in COMPOSITIONS:
        raise ExprflowInputError(f"composition must be one of {COMPOSITIONS}, got {composition!r}.")
    for key in weights:
        space.key_index(key)
    cond = cond.to(torch.long)
    digits = space.unpack(cond[:1].numpy())[0]
    specified = [k for k in range(len(space.keys)) if digits[k] != space.sizes[k]]
    w = [float(weights.get(space.keys[k], 1.0)) for k in specified]
    if composition == "joint":
        subsets = [specified[: i + 1] for i in range(len(specified))]
    else:
        subsets = [[k] for k in specified]
    variants = [space.keep_only(cond, [])] + [space.keep_only(cond, s) for s in subsets]

    def velocity(x: Tensor, t: Tensor | float) -> Tensor:
        tb = _time_batch(t, x)
        m = len(variants)
        v = model(x.repeat(m, *[1] * (x.dim() - 1)), tb.repeat(m), torch.cat(variants)).chunk(m, dim=0)
        out = v[0].clone()
        for i, wi in enumerate(w):
            base = v[i] if composition == "joint" else v[0]
            out = out + wi * (v[i + 1] - base)
        return out

    return velocity
