"""Genes as entities: a learned embedding per gene, keyed by gene NAME, plus an encoding of its value.

A gene's token is ``e_g + V(u_g)``: ``e_g`` a row of the embedding table, ``u_g`` the gene's log1p
expression and ``V`` a value encoding (``"linear"``: ``w u + b``; ``"fourier"``: a linear map of
``[u, sin(w_k u), cos(w_k u)]`` with learned frequencies ``w_k``).

The backbone input of StateFlow is the standardised state ``x = (u - mean) / std``; the encoder keeps
``loc = mean`` and ``scale = std`` as buffers and recovers ``u = x * scale + loc``. Without
:meth:`GeneEntityEncoder.setup` (a latent state, or a test) the coordinates are anonymous entities and
``loc = 0, scale = 1``.

Gene names are stored as 64-bit hashes (a buffer, so they travel with the weights and load with
``torch.load(weights_only=True)``). :func:`match_gene_panel` maps another panel's genes to the model's
rows by name; unknown genes are reported with their count and examples, never silently mis-indexed.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)

DETECTION_THRESHOLD = 1e-3
"""log1p values above this count as detected (the smallest real one is log1p(1e4 / library) >> 1e-3;
the threshold absorbs the float error of un-standardising exact zeros)."""


def gene_hash(names: Sequence[str]) -> Tensor:
    """Stable signed 64-bit hashes (BLAKE2b) of gene names, as an int64 tensor ``(len(names),)``."""
    values = [int.from_bytes(hashlib.blake2b(str(n).encode(), digest_size=8).digest(), "little", signed=True)
              for n in names]
    return torch.tensor(values, dtype=torch.int64)


@dataclass(frozen=True)
class GeneMatch:
    """Where another panel's genes sit in a model.

    Attributes
    ----------
    model_index
        row of each shared gene in the model's table (``LongTensor (n_shared,)``).
    panel_index
        column of that gene in the other panel (``np.ndarray (n_shared,)``), same order.
    unknown
        the panel's gene names the model does not know.
    """

    model_index: Tensor
    panel_index: np.ndarray
    unknown: list[str]


def match_gene_panel(model_hashes: Tensor, names: Sequence[str], on_unknown: str = "raise") -> GeneMatch:
    """Map gene ``names`` (another panel) to rows of a model whose genes have hashes ``model_hashes``.

    ``on_unknown="raise"`` raises :class:`ExprflowInputError` naming how many genes are unknown (with
    examples); ``"drop"`` keeps the shared genes and logs the same report as a warning. No shared gene
    at all, or a name given twice, always raises.
    """
    if on_unknown not in ("raise", "drop"):
        raise ValueError(f"on_unknown must be 'raise' or 'drop', got {on_unknown!r}")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ExprflowInputError(f"The gene panel names {len(dup)} genes twice (e.g. {dup[:5]}); "
                                 "make var_names unique.")
    row_of = {int(h): i for i, h in enumerate(model_hashes.tolist())}
    hashes = gene_hash(names).tolist()
    rows = [row_of.get(int(h), -1) for h in hashes]
    unknown = [n for n, r in zip(names, rows) if r < 0]
    panel_index = np.array([j for j, r in enumerate(rows) if r >= 0], dtype=np.int64)
    report = (f"{len(unknown)} of {len(names)} genes are not in the model's gene panel (e.g. {unknown[:5]}); "
              f"{len(panel_index)} genes are shared.")
    if len(panel_index) == 0:
        raise ExprflowInputError(f"{report} No gene in common: was the model trained on another organism or "
                                 "gene identifier (symbols vs Ensembl IDs)?")
    if unknown and on_unknown == "raise":
        raise ExprflowInputError(f"{report} Subset the data to shared genes, or pass on_unknown='drop'.")
    if unknown:
        logger.warning("%s Dropping the unknown genes.", report)
    model_index = torch.tensor([rows[j] for j in panel_index], dtype=torch.long)
    return GeneMatch(model_index, panel_index, unknown)


class ValueEncoding(nn.Module):
    """Scalar value ``u (...)`` -> ``(..., width)``: ``"linear"`` or ``"fourier"`` features (see module)."""

    def __init__(self, width: int, kind: str = "fourier", n_frequencies: int = 8) -> None:
        super().__init__()
        if kind not in ("linear", "fourier"):
            raise ValueError(f"value encoding must be 'linear' or 'fourier', got {kind!r}")
        self.kind = kind
        n_features = 1 if kind == "linear" else 1 + 2 * n_frequencies
        # log-spaced frequencies from 0.5 to ~2**(n-2) per unit of log1p expression
        self.frequencies = (nn.Parameter(math.pi * 2.0 ** torch.arange(-1.0, n_frequencies - 1.0))
                            if kind == "fourier" else None)
        self.proj = nn.Linear(n_features, width)

    def forward(self, u: Tensor) -> Tensor:
        u = u.unsqueeze(-1)  # (..., 1)
        if self.frequencies is not None:
            angles = u * self.frequencies  # (..., n_frequencies)
            u = torch.cat([u, torch.sin(angles), torch.cos(angles)], dim=-1)
        return self.proj(u)


class GeneEntityEncoder(nn.Module):
    """Gene tokens ``e_g + V(u_g)`` for the genes of a panel (see the module docstring).

    Parameters
    ----------
    n_genes
        number of genes in the model's panel (the state's width).
    width
        token width.
    value_encoding
        ``"fourier"`` or ``"linear"``.
    n_frequencies
        Fourier frequencies of the value encoding.
    """

    def __init__(self, n_genes: int, width: int, value_encoding: str = "fourier", n_frequencies: int = 8) -> None:
        super().__init__()
        self.n_genes = n_genes
        self.embedding = nn.Embedding(n_genes, width)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.value = ValueEncoding(width, value_encoding, n_frequencies)
        self.register_buffer("gene_hashes", torch.zeros(n_genes, dtype=torch.int64))
        self.register_buffer("has_names", torch.tensor(False))
        self.register_buffer("loc", torch.zeros(n_genes))
        self.register_buffer("scale", torch.ones(n_genes))

    def setup(self, var_names: Sequence[str], loc: np.ndarray | None = None, scale: np.ndarray | None = None) -> None:
        """Key the table by ``var_names`` and set the un-standardisation ``u = x * scale + loc``."""
        if len(var_names) != self.n_genes:
            raise ExprflowInputError(f"{len(var_names)} gene names for a panel of {self.n_genes} genes")
        hashes = gene_hash(var_names)
        if len(torch.unique(hashes)) != len(hashes):
            raise ExprflowInputError("Gene names are not unique; make var_names unique before training.")
        self.gene_hashes.copy_(hashes)
        self.has_names.fill_(True)
        if loc is not None:
            self.loc.copy_(torch.as_tensor(np.asarray(loc), dtype=self.loc.dtype))
        if scale is not None:
            self.scale.copy_(torch.as_tensor(np.asarray(scale), dtype=self.scale.dtype))

    def match(self, names: Sequence[str], on_unknown: str = "raise") -> GeneMatch:
        """Rows of ``names`` (another gene panel) in this table; see :func:`match_gene_panel`."""
        if not bool(self.has_names):
            raise ExprflowInputError("This backbone has no gene names (it was never set up on a gene panel), "
                                     "so another panel cannot be mapped to it by name.")
        return match_gene_panel(self.gene_hashes, names, on_unknown)

    def ids(self, gene_ids: Tensor | None, device: torch.device) -> Tensor:
        """The panel's rows: ``gene_ids`` or all rows ``0 .. n_genes - 1``."""
        if gene_ids is None:
            return torch.arange(self.n_genes, device=device)
        return gene_ids.to(device=device, dtype=torch.long)

    def to_log1p(self, x: Tensor, ids: Tensor) -> Tensor:
        """Standardised state ``x (B, n)`` of genes ``ids (n,)`` -> log1p values ``u (B, n)``."""
        return x * self.scale[ids] + self.loc[ids]

    def forward(self, u: Tensor, ids: Tensor) -> Tensor:
        """Log1p values ``u (B, n)`` of genes ``ids (n,)`` -> tokens ``(B, n, width)``."""
        return self.embedding(ids) + self.value(u)
