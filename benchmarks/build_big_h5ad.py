"""Build an atlas-sized .h5ad by concatenating kang2018_ifnb with itself ON DISK (never in memory).

    python benchmarks/build_big_h5ad.py --copies 10 --out /tmp/exprflow_big/kang_x10.h5ad

Uses ``anndata.experimental.concat_on_disk`` (sparse rows are streamed; ``max_loaded_elems`` bounds the
memory), so the 10x file (139,990 cells x 14,053 genes, ~98M stored counts) is built without ever
holding it. Cell names get a ``-<copy>`` suffix so they stay unique; ``obs['copy']`` says which copy a
cell came from. Write it to a scratch path outside the repository (it is ~0.8 GB uncompressed); it is
never committed. The script also prints the file's layout (shape, stored entries, HDF5 chunking and
compression), because read throughput of the out-of-core loader depends on it.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import h5py

from bench_common import SHARED, cpu_seconds, status_mb

KANG = SHARED / "kang2018_ifnb.h5ad"


def build(copies: int, out: Path, source: Path = KANG, max_loaded_elems: int = 20_000_000) -> dict:
    """Concatenate ``copies`` copies of ``source`` into ``out`` (through a temporary name; atomic)."""
    from anndata.experimental import concat_on_disk

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.h5ad")
    start, cpu0 = time.perf_counter(), cpu_seconds()
    inputs = {str(i): source for i in range(copies)}
    concat_on_disk(inputs, tmp, max_loaded_elems=max_loaded_elems, label="copy", index_unique="-", merge="same")
    tmp.replace(out)
    with h5py.File(out, "r") as f:
        X = f["X"]
        layout = {
            "encoding": X.attrs["encoding-type"], "shape": [int(s) for s in X.attrs["shape"]],
            "nnz": int(X["data"].shape[0]), "data_dtype": str(X["data"].dtype),
            "chunks": X["data"].chunks, "compression": X["data"].compression,
        }
    info = {"copies": copies, "path": str(out), "bytes": out.stat().st_size, "wall_s": time.perf_counter() - start,
            "cpu_s": cpu_seconds() - cpu0, "peak_rss_mb": status_mb("VmHWM"), **layout}
    logging.warning("built %s", info)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("/tmp/exprflow_big/kang_x10.h5ad"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    if args.out.exists() and not args.overwrite:
        logging.warning("%s exists (pass --overwrite to rebuild)", args.out)
        return
    build(args.copies, args.out)


if __name__ == "__main__":
    main()
