"""read_adata and the bundled datasets."""

from __future__ import annotations

import numpy as np
import pytest

from exprflow.data import read_adata
from exprflow.datasets import available, bundled_path, pbmc3k
from exprflow.errors import ExprflowInputError


def test_anndata_passes_through_unchanged(counts_adata):
    assert read_adata(counts_adata) is counts_adata


def test_reads_h5ad(counts_adata, tmp_path):
    path = tmp_path / "x.h5ad"
    counts_adata.write_h5ad(path)
    for arg in (path, str(path)):
        adata = read_adata(arg)
        assert adata.shape == counts_adata.shape and (adata.X != counts_adata.X).nnz == 0
    backed = read_adata(path, backed="r")
    assert backed.isbacked
    backed.file.close()


def test_missing_file(tmp_path):
    with pytest.raises(ExprflowInputError, match="File not found") as info:
        read_adata(tmp_path / "nope.h5ad")
    assert "nope.h5ad" in str(info.value) and "path" in str(info.value)


def test_not_h5ad(tmp_path):
    path = tmp_path / "counts.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ExprflowInputError, match=r"not an \.h5ad file \(suffix '\.csv'\)") as info:
        read_adata(path)
    assert "write_h5ad" in str(info.value)


def test_directory(tmp_path):
    with pytest.raises(ExprflowInputError, match="is a directory"):
        read_adata(tmp_path)


def test_corrupt_h5ad(tmp_path):
    path = tmp_path / "broken.h5ad"
    path.write_bytes(b"not an hdf5 file")
    with pytest.raises(ExprflowInputError, match="Could not read") as info:
        read_adata(path)
    assert "broken.h5ad" in str(info.value)


def test_wrong_type():
    with pytest.raises(ExprflowInputError, match="got ndarray"):
        read_adata(np.zeros((2, 2)))


def test_bundled_pbmc3k():
    assert available() == ["pbmc3k"]
    path = bundled_path("pbmc3k")
    assert path.is_file() and path.suffix == ".h5ad"
    adata = pbmc3k()
    assert adata.shape == (2638, 2000) and adata.obs["cell_type"].nunique() == 9
    assert np.issubdtype(adata.X.dtype, np.integer)


def test_unknown_bundled_dataset():
    with pytest.raises(ExprflowInputError, match="No bundled dataset named 'pbmc68k'") as info:
        bundled_path("pbmc68k")
    assert "pbmc3k" in str(info.value)
