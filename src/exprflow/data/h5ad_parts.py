"""An ``.h5ad`` assembled from CSR parts on disk, one part in memory at a time.

:class:`PartStore` keeps the parts of an unfinished output as ``part_000000.npz`` files in a folder,
each written atomically (temporary name + ``os.replace``), so a run killed at any moment leaves only
complete parts and can be resumed. :func:`write_h5ad_from_parts` then writes the final AnnData file
(``X`` as CSR, ``obs`` with categorical columns and ``source``, ``var``, ``uns``) straight into HDF5
with h5py: every dataset is created at its final size and filled part by part, so memory is one part
plus a few bytes per cell (the condition codes). The file is written under a temporary name and moved
onto the final name only when complete (never a half-written file under the final name).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

_ENC = {"encoding-type", "encoding-version"}


class PartStore:
    """Complete parts of an unfinished output, plus a ``manifest.json`` describing the request."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.json"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text())

    def start(self, manifest: dict) -> None:
        """Create the folder and its manifest (atomically), discarding any earlier parts."""
        self.remove()
        self.folder.mkdir(parents=True)
        tmp = self.folder / ".manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, self.manifest_path)

    def path(self, k: int) -> Path:
        return self.folder / f"part_{k:06d}.npz"

    def done(self, k: int) -> bool:
        return self.path(k).exists()

    def write(self, k: int, counts: sp.csr_matrix, codes: np.ndarray | None) -> None:
        """Store part ``k`` (counts and per-cell condition codes) atomically."""
        counts = sp.csr_matrix(counts)
        tmp = self.folder / f".part_{k:06d}.tmp.npz"
        arrays = {"data": counts.data, "indices": counts.indices, "indptr": counts.indptr,
                  "shape": np.asarray(counts.shape, dtype=np.int64)}
        if codes is not None:
            arrays["codes"] = np.asarray(codes, dtype=np.int64)
        np.savez(tmp, **arrays)
        os.replace(tmp, self.path(k))

    def read(self, k: int) -> tuple[sp.csr_matrix, np.ndarray | None]:
        with np.load(self.path(k)) as f:
            counts = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
            return counts, (f["codes"] if "codes" in f else None)

    def remove(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)


def _encode(node, kind: str, version: str = "0.2.0") -> None:
    node.attrs["encoding-type"], node.attrs["encoding-version"] = kind, version


def _write_categorical(obs: h5py.Group, name: str, codes: np.ndarray, categories: Sequence[str]) -> None:
    dtype = np.int8 if len(categories) < 127 else np.int16 if len(categories) < 32_767 else np.int32
    ad.io.write_elem(obs, name, pd.Categorical.from_codes(codes.astype(dtype), categories=list(categories)))


def write_h5ad_from_parts(
    store: PartStore,
    n_parts: int,
    path: str | os.PathLike,
    var_names: Sequence[str],
    *,
    condition_key: str | None,
    levels: Sequence[str] | None,
    uns: dict,
    obs_prefix: str = "gen_",
    compression: str | None = None,
) -> Path:
    """Write parts ``0 .. n_parts - 1`` of ``store`` as one AnnData file at ``path`` (atomically)."""
    shapes, nnz, has_codes = [], 0, False
    for k in range(n_parts):  # sizes first (npz members are read lazily: only indptr and shape here)
        with np.load(store.path(k)) as f:
            shapes.append(int(f["shape"][0]))
            nnz += int(f["indptr"][-1])
            has_codes = has_codes or "codes" in f.files
    dtype = store.read(0)[0].dtype  # every part comes from the same model and decoding
    n_cells, n_genes = sum(shapes), len(var_names)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.h5ad")
    chunk = (max(1, min(nnz, 1 << 18)),)
    with h5py.File(tmp, "w") as file:
        _encode(file, "anndata", "0.1.0")
        X = file.create_group("X")
        _encode(X, "csr_matrix", "0.1.0")
        X.attrs["shape"] = np.asarray([n_cells, n_genes], dtype=np.int64)
        data = X.create_dataset("data", shape=(nnz,), dtype=dtype, chunks=chunk, compression=compression)
        indices = X.create_dataset("indices", shape=(nnz,), dtype=np.int32, chunks=chunk, compression=compression)
        indptr = X.create_dataset("indptr", shape=(n_cells + 1,), dtype=np.int64)
        obs = file.create_group("obs")
        _encode(obs, "dataframe")
        obs.attrs["_index"] = "_index"
        columns = ([condition_key] if condition_key is not None and has_codes else []) + ["source"]
        obs.attrs["column-order"] = np.asarray(columns, dtype=object)
        names = obs.create_dataset("_index", shape=(n_cells,), dtype=h5py.string_dtype())
        _encode(names, "string-array")
        codes, row, pos = [], 0, 0
        indptr[0] = 0
        for k in range(n_parts):
            counts, part_codes = store.read(k)
            m, e = counts.shape[0], counts.nnz
            data[pos : pos + e] = counts.data.astype(dtype, copy=False)
            indices[pos : pos + e] = counts.indices
            indptr[row + 1 : row + m + 1] = counts.indptr[1:].astype(np.int64) + pos
            names[row : row + m] = np.asarray([f"{obs_prefix}{i}" for i in range(row, row + m)], dtype=object)
            if part_codes is not None:
                codes.append(part_codes)
            row, pos = row + m, pos + e
        if len(columns) == 2:
            _write_categorical(obs, condition_key, np.concatenate(codes), levels)
        _write_categorical(obs, "source", np.zeros(n_cells, dtype=np.int8), ["generated"])
        ad.io.write_elem(file, "var", pd.DataFrame(index=pd.Index(list(var_names), dtype=object)))
        for name in ("layers", "obsm", "varm", "obsp", "varp"):
            ad.io.write_elem(file, name, {})
        ad.io.write_elem(file, "uns", uns)
    os.replace(tmp, path)
    return path
