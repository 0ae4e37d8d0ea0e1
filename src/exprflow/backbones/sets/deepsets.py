"""DeepSets over genes (Zaheer et al., "Deep Sets", 2017): ``rho(mean_g phi(e_g, u_g))``.

::

    tokens_g = e_g + V(u_g)                                # GeneEntityEncoder
    cell = rho(mean_g phi(tokens_g), c)                    # phi: MLP (no t, c); rho: adaLN-Zero blocks
    z_g = tokens_g + W cell;  z_g = AdaLNZeroBlock(z_g, c) x depth;  v_g = GeneHead(z_g, c)

``phi`` sees neither time nor condition, so the pooled sum has an exact sparse form (``u_g = 0`` for
undetected genes)::

    sum_g phi(e_g, u_g) = sum_g phi(e_g, 0) + sum_{u_g != 0} [phi(e_g, u_g) - phi(e_g, 0)]

The first term is one pass over the G gene embeddings, shared by every cell; the second costs one
``phi`` per detected gene. :meth:`DeepSetsBackbone.embed_sparse` computes the cell embedding that way
(cost linear in the detected genes, not in B x G); :meth:`embed` is the dense path.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from exprflow.backbones.mlp import AdaLNZeroBlock
from exprflow.backbones.registry import BACKBONES
from exprflow.backbones.sets.base import GeneSetBackbone


@BACKBONES.register("deepsets")
class DeepSetsBackbone(GeneSetBackbone):
    """DeepSets velocity network over the set of genes (see module docstring).

    Parameters
    ----------
    dim
        number of genes.
    n_conditions
        condition codes (code ``n_conditions`` is null).
    hidden
        token / cell width.
    depth
        adaLN-Zero blocks of ``rho`` (on the pooled cell vector) and, as many again, of the
        per-gene (equivariant) head.
    phi_depth
        hidden layers of ``phi``.
    mlp_ratio
        inner width of the blocks as a multiple of ``hidden``.
    time_dim
        width of the sinusoidal time code.
    value_encoding
        ``"fourier"`` or ``"linear"``.
    """

    def __init__(self, dim: int, n_conditions: int = 0, hidden: int = 64, depth: int = 2, phi_depth: int = 2,
                 mlp_ratio: float = 2.0, time_dim: int = 64, value_encoding: str = "fourier") -> None:
        super().__init__(dim, n_conditions, hidden, time_dim, value_encoding)
        layers: list[nn.Module] = []
        for _ in range(phi_depth):
            layers += [nn.Linear(hidden, hidden), nn.GELU()]
        self.phi = nn.Sequential(*layers, nn.Linear(hidden, hidden))
        self.rho = nn.ModuleList(AdaLNZeroBlock(hidden, mlp_ratio) for _ in range(depth))
        self.cell_to_gene = nn.Linear(hidden, hidden)
        self.gene_blocks = nn.ModuleList(AdaLNZeroBlock(hidden, mlp_ratio) for _ in range(depth))

    @classmethod
    def small_config(cls) -> dict:
        """Tiny hyperparameters for fast tests."""
        return {"hidden": 16, "depth": 1, "phi_depth": 1, "time_dim": 16}

    def _rho(self, pooled: Tensor, c_act: Tensor) -> Tensor:
        for block in self.rho:
            pooled = block(pooled, c_act)
        return pooled

    def encode(self, tokens: Tensor, u: Tensor, ids: Tensor, c_act: Tensor) -> tuple[Tensor, Tensor]:
        cell = self._rho(self.phi(tokens).mean(dim=1), c_act)  # (B, hidden), invariant
        z = tokens + self.cell_to_gene(cell).unsqueeze(1)  # (B, n, hidden), equivariant
        for block in self.gene_blocks:
            z = block(z, c_act.unsqueeze(1))
        return z, cell

    def _phi_zero(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """``phi(e_g + V(0))`` of genes ``ids`` ``(G, hidden)`` and its sum ``(1, hidden)``: one pass over G.

        Without gradients (inference) the pair is cached until a weight changes (in-place updates bump a
        tensor's version; loading or swapping weights changes it too), so each batch then costs only
        its detected genes.
        """
        params = [*self.genes.embedding.parameters(), *self.genes.value.parameters(), *self.phi.parameters()]
        key = (hash(ids.cpu().numpy().tobytes()), tuple((p.data_ptr(), p._version) for p in params))
        cached = getattr(self, "_phi_zero_cache", None)
        if not torch.is_grad_enabled() and cached is not None and cached[0] == key:
            return cached[1], cached[2]
        zero = self.genes.value(torch.zeros(1, device=ids.device))  # V(0), (1, hidden)
        phi_zero = self.phi(self.genes.embedding(ids) + zero)  # (G, hidden), shared by all cells
        phi_zero_sum = phi_zero.sum(dim=0, keepdim=True)
        if not torch.is_grad_enabled():
            self._phi_zero_cache = (key, phi_zero, phi_zero_sum)
        return phi_zero, phi_zero_sum

    def embed_sparse(self, values: sp.spmatrix | Tensor, t: Tensor | float | None = None,
                     cond: Tensor | None = None, gene_ids: Tensor | None = None) -> Tensor:
        """Cell embedding from sparse LOG1P values (CSR, cells x panel genes) in O(G + detected genes)
        (O(detected genes) when the ``phi(e_g, 0)`` pass is cached, see :meth:`_phi_zero`).

        Equals ``embed(x)`` for the standardised state ``x`` of the same cells (up to float error).
        Accepts a scipy CSR matrix or a torch sparse CSR tensor.
        """
        device = self.genes.embedding.weight.device
        if isinstance(values, Tensor):
            crow, col, val = values.crow_indices(), values.col_indices(), values.values()
            n_cells, n_genes = values.shape
        else:
            csr = sp.csr_matrix(values)
            crow = torch.from_numpy(csr.indptr.astype(np.int64))
            col = torch.from_numpy(csr.indices.astype(np.int64))
            val = torch.from_numpy(csr.data.astype(np.float32))
            n_cells, n_genes = csr.shape
        crow, col, val = crow.to(device), col.to(device), val.to(device=device, dtype=torch.float32)
        ids = self.genes.ids(gene_ids, device)
        if n_genes != ids.shape[0]:
            raise ValueError(f"values have {n_genes} columns for a panel of {ids.shape[0]} genes")
        phi_zero, phi_zero_sum = self._phi_zero(ids)
        rows = torch.repeat_interleave(torch.arange(n_cells, device=device), crow[1:] - crow[:-1])  # (nnz,)
        delta = self.phi(self.genes.embedding(ids[col]) + self.genes.value(val)) - phi_zero[col]  # (nnz, hidden)
        total = phi_zero_sum.expand(n_cells, -1).index_add(0, rows, delta)  # (B, hidden)
        dummy = torch.empty(n_cells, 1, device=device)
        c_act = self.conditioning(1.0 if t is None else t, cond, dummy)
        return self._rho(total / n_genes, c_act)
