"""Pathways as tokens: a Transformer over gene-set tokens, decoded back to genes through the membership.

With ``M`` the sets x genes membership plus one "no set" row for the genes in no set (so every gene
is in at least one row), ``|s|`` a set's size and ``deg_g`` the number of rows gene ``g`` is in::

    h_g = phi(e_g + V(u_g))                                     # gene entity x value (GeneEntityEncoder), (B, G, d)
    T_s = (1 / |s|) sum_{g in s} h_g  (+ n for the "no set" row) # pooled tokens, sparse M @ h, (B, S + 1, d)
    T = SAB(... SAB(T, c))                                      # attention WITHOUT positions, adaLN-Zero on c
    cell = mean_s T_s                                           # invariant cell embedding (embed())
    z_g = e_g + V(u_g) + W (1 / deg_g) sum_{s ni g} T_s         # back to genes through M^T
    z_g = AdaLNZeroBlock(z_g, c) x gene_depth
    v_g = GeneHead(z_g, c) + a_g(c) x_g + b_g(c)                # gene-level residual (affine skip per gene)

``c = SiLU(TimeEmbedding(t) + ConditionEmbedding(cond))``. There are no per-set parameters: a token is
known by its members' embeddings, so the output does not depend on the ORDER of the sets, and the
per-gene part is equivariant to the order of genes (the affine skip is indexed by the gene's row).

Gene sets are resolved in :meth:`PathwayBackbone.setup_genes` (the GMT is read then, against the model's
genes) and stored as index buffers ``set_index``/``gene_index``; their length is only known then, so
loading resizes them to the saved shapes (:meth:`_load_from_state_dict`): a saved model loads without
the GMT file. Before set-up the backbone has no sets: one "no set" token pools every gene.

``control="random"`` swaps the real sets for degree-matched random ones (same sizes, uniform members,
fixed ``control_seed``; ``"random_swap"`` also keeps each gene's number of sets), the control of
arXiv 2505.04300; see :mod:`exprflow.representations.genesets`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from exprflow.backbones.base import GeneContext
from exprflow.backbones.mlp import AdaLNZeroBlock
from exprflow.backbones.registry import BACKBONES
from exprflow.backbones.sets.attention import ISAB, SAB
from exprflow.backbones.sets.base import GeneSetBackbone
from exprflow.errors import ExprflowInputError
from exprflow.representations.genesets import GeneSets, read_gmt

logger = logging.getLogger(__name__)

CONTROLS = ("none", "random", "random_swap")


def _sparse(rows: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, shape, check_invariants=False).coalesce()


def _sparse_apply(matrix: Tensor, h: Tensor) -> Tensor:
    """``matrix (m, n)`` sparse applied along axis 1 of ``h (B, n, d)`` -> ``(B, m, d)``."""
    b, n, d = h.shape
    flat = h.permute(1, 0, 2).reshape(n, b * d)  # (n, B d)
    return torch.sparse.mm(matrix, flat).reshape(matrix.shape[0], b, d).permute(1, 0, 2)


@BACKBONES.register("pathway")
class PathwayBackbone(GeneSetBackbone):
    """Pathway-token velocity network (see module docstring).

    Parameters
    ----------
    dim
        number of genes.
    n_conditions
        condition codes (code ``n_conditions`` is null).
    gene_sets
        a GMT path or a mapping ``{set name: [genes]}``; read at :meth:`setup_genes`.
    control
        ``"none"`` (the sets as given), ``"random"`` or ``"random_swap"`` (degree-matched random sets).
    control_seed
        seed of the random control.
    min_set_size, max_set_size, max_sets
        filters on the sets' sizes among the model's genes (see
        :meth:`GeneSets.map`); ``max_sets`` keeps the largest.
    min_coverage
        least fraction of genes in a kept set; less is an input error (wrong species/ids).
    hidden
        token width.
    depth
        attention blocks over tokens.
    heads
        attention heads.
    attention
        ``"sab"`` (full attention over tokens) or ``"isab"`` (``n_inducing`` points; many sets).
    phi_depth
        hidden layers of ``phi``.
    gene_depth
        per-gene adaLN-Zero blocks after decoding.
    gene_skip
        add the per-gene affine skip ``a_g(c) x_g + b_g(c)`` (``2 dim hidden`` parameters).
    mlp_ratio, time_dim, value_encoding
        as in the other gene-set backbones.
    """

    def __init__(self, dim: int, n_conditions: int = 0, gene_sets: str | Mapping[str, Sequence[str]] | None = None,
                 control: str = "none", control_seed: int = 0, min_set_size: int = 10,
                 max_set_size: int | None = None, max_sets: int | None = 1024, min_coverage: float = 0.05,
                 hidden: int = 64, depth: int = 2, heads: int = 4, attention: str = "sab", n_inducing: int = 32,
                 phi_depth: int = 1, gene_depth: int = 1, gene_skip: bool = True, mlp_ratio: float = 2.0,
                 time_dim: int = 64, value_encoding: str = "fourier") -> None:
        super().__init__(dim, n_conditions, hidden, time_dim, value_encoding)
        if control not in CONTROLS:
            raise ExprflowInputError(f"control must be one of {CONTROLS}, got {control!r}")
        self.gene_sets = dict(gene_sets) if isinstance(gene_sets, Mapping) else gene_sets
        self.control, self.control_seed = control, control_seed
        self.filters = {"min_size": min_set_size, "max_size": max_set_size, "max_sets": max_sets,
                        "min_coverage": min_coverage}
        layers: list[nn.Module] = []
        for _ in range(phi_depth):
            layers += [nn.Linear(hidden, hidden), nn.GELU()]
        self.phi = nn.Sequential(*layers, nn.Linear(hidden, hidden))
        self.no_set_embedding = nn.Parameter(0.02 * torch.randn(hidden))  # marks the "no set" token
        if attention == "sab":
            self.blocks = nn.ModuleList(SAB(hidden, heads, mlp_ratio) for _ in range(depth))
        elif attention == "isab":
            self.blocks = nn.ModuleList(ISAB(hidden, n_inducing, heads, mlp_ratio) for _ in range(depth))
        else:
            raise ExprflowInputError(f"attention must be 'sab' or 'isab', got {attention!r}")
        self.token_to_gene = nn.Linear(hidden, hidden)
        self.gene_blocks = nn.ModuleList(AdaLNZeroBlock(hidden, mlp_ratio) for _ in range(gene_depth))
        self.skip_modulation = nn.Linear(hidden, 2 * dim) if gene_skip else None
        if self.skip_modulation is not None:
            nn.init.zeros_(self.skip_modulation.weight)
            nn.init.zeros_(self.skip_modulation.bias)
        # membership (set s, gene row g) pairs; resized at set-up and at load
        self.register_buffer("set_index", torch.zeros(0, dtype=torch.long))
        self.register_buffer("gene_index", torch.zeros(0, dtype=torch.long))
        self.register_buffer("n_sets", torch.tensor(0, dtype=torch.long))
        self.gene_set_names: list[str] = []
        self.coverage_report = None

    @classmethod
    def small_config(cls) -> dict:
        """Tiny hyperparameters and a toy collection over genes ``G0..G7`` (see :meth:`toy_gene_context`)."""
        sets = {"A": ["G0", "G1", "G2"], "B": ["G2", "G3", "G4", "G5"], "C": ["G5", "G6", "G7", "G0"]}
        return {"gene_sets": sets, "min_set_size": 2, "min_coverage": 0.0, "hidden": 16, "depth": 1, "heads": 2,
                "time_dim": 16}

    @staticmethod
    def toy_gene_context(dim: int) -> GeneContext:
        """A gene context with genes ``G0 .. G{dim-1}`` and no standardisation (tests of the contract)."""
        names = [f"G{i}" for i in range(dim)]
        return GeneContext(names, pd.DataFrame(index=names), sp.csr_matrix((1, dim), dtype=np.float32),
                           lambda counts: torch.zeros(counts.shape[0], dim), log1p_mean=None, log1p_std=None)

    # --------------------------------------------------------------------- genes
    def setup_genes(self, context: GeneContext) -> None:
        """Key genes by name (see :class:`GeneSetBackbone`), then read and map the gene sets."""
        super().setup_genes(context)
        if self.gene_sets is None:
            raise ExprflowInputError(
                "The pathway backbone needs gene sets: pass backbone_kwargs={'gene_sets': 'path/to/sets.gmt'} "
                "(CLI: --backbone-kwargs '{\"gene_sets\": \"path/to/sets.gmt\"}').")
        sets = self.gene_sets if isinstance(self.gene_sets, dict) else read_gmt(self.gene_sets)
        mapped = GeneSets.map(sets, context.var_names, **self.filters)
        if self.control != "none":
            mapped = mapped.random_degree_matched(self.control_seed, preserve_gene_degree=self.control == "random_swap")
            logger.info("Control %r (seed %d): %d random sets of the same sizes", self.control, self.control_seed,
                        len(mapped.names))
        self.set_membership(mapped)

    def set_membership(self, gene_sets: GeneSets) -> None:
        """Store a :class:`GeneSets` over this model's genes in the membership buffers."""
        if gene_sets.membership.shape[1] != self.dim:
            raise ExprflowInputError(f"gene sets over {gene_sets.membership.shape[1]} genes for {self.dim} genes")
        coo = gene_sets.membership.tocoo()
        device = self.set_index.device
        self.set_index = torch.as_tensor(coo.row, dtype=torch.long, device=device)
        self.gene_index = torch.as_tensor(coo.col, dtype=torch.long, device=device)
        self.n_sets.fill_(len(gene_sets.names))
        self.gene_set_names = list(gene_sets.names)
        self.coverage_report = gene_sets.report

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the membership's length is data-dependent: take the saved one
        for name in ("set_index", "gene_index"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ tokens
    def pool_maps(self, ids: Tensor) -> tuple[Tensor, Tensor, bool]:
        """Sparse pooling ``(S', n)`` (rows: non-empty sets, then "no set" if non-empty; values 1/size)
        and decoding ``(n, S')`` (values 1/deg) maps for the panel ``ids (n,)`` of model rows, and whether
        the last token is the "no set" one."""
        n, device = ids.shape[0], ids.device
        column = torch.full((self.dim,), -1, dtype=torch.long, device=device)
        column[ids] = torch.arange(n, device=device)
        cols = column[self.gene_index]
        present = cols >= 0
        rows, cols = self.set_index[present], cols[present]
        in_set = torch.zeros(n, dtype=torch.bool, device=device)
        in_set[cols] = True
        no_set = torch.nonzero(~in_set).squeeze(1)
        rows = torch.cat([rows, torch.full_like(no_set, int(self.n_sets))])  # the "no set" row is n_sets
        cols = torch.cat([cols, no_set])
        used, rows = torch.unique(rows, return_inverse=True)  # drop sets with no gene in the panel
        n_tokens = used.shape[0]
        size = torch.bincount(rows, minlength=n_tokens).float()
        deg = torch.bincount(cols, minlength=n).float()
        pool = _sparse(rows, cols, 1.0 / size[rows], (n_tokens, n))
        decode = _sparse(cols, rows, 1.0 / deg[cols], (n, n_tokens))
        return pool, decode, bool(no_set.numel())  # "no set" has the largest row, so it is last

    def encode(self, tokens: Tensor, u: Tensor, ids: Tensor, c_act: Tensor) -> tuple[Tensor, Tensor]:
        pool, decode, has_no_set = self.pool_maps(ids)
        T = _sparse_apply(pool, self.phi(tokens))  # (B, S', d): pooled pathway tokens
        if has_no_set:
            T = torch.cat([T[:, :-1], T[:, -1:] + self.no_set_embedding], dim=1)
        for block in self.blocks:
            T = block(T, c_act)  # no positions: equivariant in the tokens
        cell = T.mean(dim=1)  # (B, d), invariant
        z = tokens + self.token_to_gene(_sparse_apply(decode, T))  # (B, n, d): membership^T back to genes
        for block in self.gene_blocks:
            z = block(z, c_act.unsqueeze(1))
        return z, cell

    def forward(self, x: Tensor, t: Tensor | float, cond: Tensor | None = None,
                gene_ids: Tensor | None = None) -> Tensor:
        """``x (B, n)`` standardised state, ``t (B,)`` or scalar, ``cond (B,)`` or None -> ``v (B, n)``."""
        z, _, c_act = self._run(x, t, cond, gene_ids)
        v = self.head(z, c_act)
        if self.skip_modulation is None:
            return v
        ids = self.genes.ids(gene_ids, x.device)
        W, bias = self.skip_modulation.weight, self.skip_modulation.bias  # (2 dim, d), (2 dim,)
        a = F.linear(c_act, W[ids], bias[ids])  # (B, n): per-gene slope
        b = F.linear(c_act, W[self.dim + ids], bias[self.dim + ids])  # (B, n): per-gene offset
        return v + a * x + b
