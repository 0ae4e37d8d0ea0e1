"""Cell embeddings of a trained StateFlow whose backbone reads genes as a set, on any gene panel.

A gene-set backbone (``deepsets``, ``set_transformer``, ``rank_tokens``, ``value_bins``) keys its gene
embeddings by gene NAME, so it can read cells measured on another panel: the genes both panels share are
mapped to the model's rows, genes the model does not know are reported (count and examples) and either
refused (``on_unknown="raise"``) or dropped (``"drop"``), and model genes absent from the data are simply
absent from each cell's set. Nothing is mis-indexed by position.

::

    y = log1p(counts_shared / library_shared * target_sum)     # library over the SHARED genes
    x = (y - mean_g) / std_g                                    # the model's train statistics, per gene
    embedding = backbone.embed(x, gene_ids=model rows of the shared genes)   # (n_cells, hidden)

The library is summed over the shared genes so that, when the data hold more genes than the model
(a full transcriptome against an HVG model), cells are normalised as in training.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData

from exprflow.data import prepare_counts
from exprflow.errors import ExprflowInputError
from exprflow.representations import log_normalise

logger = logging.getLogger(__name__)


def cell_embedding(model, adata: AnnData, layer: str | None = None, on_unknown: str = "raise",
                   batch_size: int = 256) -> np.ndarray:
    """Pooled, permutation-invariant cell embeddings ``(adata.n_obs, hidden)`` of a trained StateFlow.

    ``adata`` may have another gene panel than the model (see the module docstring); it is never
    modified. ``layer``: where its counts are (a layer name or ``"X"``; default: the model's layer). Cells with no counts on the shared genes get the embedding of an empty set of values.
    """
    backbone = model.backbone
    if not (hasattr(backbone, "embed") and hasattr(backbone, "match_genes")):
        raise ExprflowInputError(
            f"The backbone {model.config.backbone!r} reads genes by position and has no pooled cell embedding; "
            "train with a gene-set backbone (deepsets, set_transformer, rank_tokens or value_bins).")
    if not model.is_trained:
        raise ExprflowInputError("The model is not trained yet: call train() (or load a trained model) first.")
    from exprflow.data.setup import read_layer

    layer = read_layer(model.setup, adata, type(model).__name__, layer)
    match = backbone.match_genes(list(adata.var_names), on_unknown=on_unknown)
    data = prepare_counts(adata[:, match.panel_index], layer=layer, require_counts=model.representation.is_counts)
    # put the kept cells back in place; cells with no counts on the shared genes stay all-zero rows
    place = sp.csr_matrix((np.ones(data.n_cells, dtype=np.float32), (data.kept, np.arange(data.n_cells))),
                          shape=(adata.n_obs, data.n_cells))
    counts = (place @ data.X).tocsr()
    rep, ids = model.representation, match.model_index
    mean, std = (rep.mean[ids.numpy()], rep.std[ids.numpy()]) if rep.config.standardize else (0.0, 1.0)
    out = []
    backbone.eval()
    with torch.no_grad(), model._ema_weights():
        for start in range(0, adata.n_obs, batch_size):
            y = log_normalise(counts[start : start + batch_size], rep.config.target_sum, rep.is_counts)
            x = torch.from_numpy(((y - mean) / std).astype(np.float32))
            out.append(backbone.embed(x, gene_ids=ids).numpy())
    embedding = np.concatenate(out) if out else np.zeros((0, backbone.hidden), dtype=np.float32)
    if not np.isfinite(embedding).all():
        raise ExprflowInputError("The cell embedding has non-finite values; the model's weights may be corrupt.")
    logger.info("Embedded %d cells on %d shared genes (%d-dimensional)", adata.n_obs, len(ids), embedding.shape[1])
    return embedding
