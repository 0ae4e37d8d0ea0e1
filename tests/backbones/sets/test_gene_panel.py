"""Gene entity encoding: names stored as hashes, another panel mapped by NAME, unknown genes reported."""

import logging

import numpy as np
import pytest
import torch

from exprflow.backbones.sets import GeneEntityEncoder, ValueEncoding, gene_hash, match_gene_panel
from exprflow.errors import ExprflowInputError

NAMES = [f"GENE{i}" for i in range(10)]


def test_gene_hash_is_stable_and_distinct():
    h = gene_hash(NAMES)
    assert h.dtype == torch.int64 and len(torch.unique(h)) == len(NAMES)
    torch.testing.assert_close(gene_hash(NAMES), h)
    assert gene_hash(["CD3E"]).item() == gene_hash(["CD3E"]).item() != gene_hash(["CD3D"]).item()


def test_match_maps_a_shuffled_subset_by_name():
    panel = ["GENE7", "GENE2", "GENE9", "GENE0"]
    m = match_gene_panel(gene_hash(NAMES), panel)
    assert m.model_index.tolist() == [7, 2, 9, 0]
    assert m.panel_index.tolist() == [0, 1, 2, 3] and m.unknown == []


def test_unknown_genes_raise_with_count_and_examples():
    panel = ["GENE3", "NOVEL1", "GENE1", "NOVEL2", "NOVEL3"]
    with pytest.raises(ExprflowInputError, match=r"3 of 5 genes are not in the model.*NOVEL1.*2 genes are shared"):
        match_gene_panel(gene_hash(NAMES), panel)


def test_unknown_genes_dropped_on_request_with_a_warning(caplog):
    panel = ["GENE3", "NOVEL1", "GENE1"]
    with caplog.at_level(logging.WARNING):
        m = match_gene_panel(gene_hash(NAMES), panel, on_unknown="drop")
    assert m.model_index.tolist() == [3, 1] and m.panel_index.tolist() == [0, 2] and m.unknown == ["NOVEL1"]
    assert "1 of 3 genes" in caplog.text and "NOVEL1" in caplog.text


def test_no_shared_gene_and_duplicates_raise():
    with pytest.raises(ExprflowInputError, match="No gene in common"):
        match_gene_panel(gene_hash(NAMES), ["ENSG01", "ENSG02"], on_unknown="drop")
    with pytest.raises(ExprflowInputError, match="twice"):
        match_gene_panel(gene_hash(NAMES), ["GENE1", "GENE1"])


def test_encoder_without_names_refuses_to_map_and_setup_checks_names():
    enc = GeneEntityEncoder(len(NAMES), 8)
    with pytest.raises(ExprflowInputError, match="no gene names"):
        enc.match(NAMES)
    with pytest.raises(ExprflowInputError, match="not unique"):
        enc.setup(["A"] * len(NAMES))
    with pytest.raises(ExprflowInputError, match="3 gene names"):
        enc.setup(["A", "B", "C"])


def test_encoder_setup_is_saved_in_buffers():
    enc = GeneEntityEncoder(len(NAMES), 8)
    loc, scale = np.linspace(0, 1, 10), np.linspace(1, 2, 10)
    enc.setup(NAMES, loc, scale)
    fresh = GeneEntityEncoder(len(NAMES), 8)
    fresh.load_state_dict(enc.state_dict())
    assert fresh.match(["GENE4"]).model_index.tolist() == [4]
    ids = torch.arange(10)
    x = torch.randn(3, 10)
    torch.testing.assert_close(fresh.to_log1p(x, ids), x * torch.as_tensor(scale, dtype=torch.float32)
                               + torch.as_tensor(loc, dtype=torch.float32))


@pytest.mark.parametrize("kind", ["linear", "fourier"])
def test_value_encoding_shapes_and_kinds(kind):
    enc = ValueEncoding(8, kind, n_frequencies=4)
    out = enc(torch.rand(2, 5))
    assert out.shape == (2, 5, 8)
    assert (enc.frequencies is None) == (kind == "linear")
    with pytest.raises(ValueError):
        ValueEncoding(8, "bins")
