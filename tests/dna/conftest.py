"""DNA fixtures: a 20 kb slice of the real E. coli K-12 genome written as a small FASTA."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

GENOME = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dna" / "MG1655-K12.fasta.gz"

SLICE = 20_000


@pytest.fixture(scope="session")
def genome_slice() -> str:
    """The first 20,000 nucleotides of E. coli K-12 MG1655 (real data)."""
    if not GENOME.exists():
        pytest.skip(f"real dataset {GENOME} not present")
    with gzip.open(GENOME, "rt") as fh:
        next(fh)
        seq, n = [], 0
        for line in fh:
            seq.append(line.strip())
            n += len(seq[-1])
            if n >= SLICE:
                break
    return "".join(seq)[:SLICE]


@pytest.fixture
def slice_fasta(tmp_path, genome_slice):
    path = tmp_path / "ecoli_20kb.fa"
    lines = [">K-12-MG1655 first 20 kb"] + [genome_slice[i:i + 70] for i in range(0, len(genome_slice), 70)]
    path.write_text("\n".join(lines) + "\n")
    return path
