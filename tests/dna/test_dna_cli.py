"""exprflow dna fit | sample | evaluate on a 20 kb slice of the E. coli genome; user errors exit 2."""

from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner

from exprflow.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("cmd", [["dna"], ["dna", "fit"], ["dna", "sample"], ["dna", "evaluate"]])
def test_help(cmd):
    result = run(*cmd, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def test_fit_sample_evaluate(tmp_path, slice_fasta):
    packed = tmp_path / "slice.fa.gz"
    packed.write_bytes(gzip.compress(slice_fasta.read_bytes()))
    r = run("dna", "fit", "--fasta", packed, "--context", 64, "--width", 16, "--depth", 1, "--max-steps", 6,
            "--backbone", "transformer", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert "transformer LM" in r.output and (tmp_path / "run" / "weights.pt").exists()
    assert run("dna", "fit", "--fasta", packed, "--out", tmp_path / "run").exit_code == 2  # exists, no --overwrite

    r = run("dna", "sample", tmp_path / "run", "--n", 3, "--length", 90, "--seed", 1, "--out", tmp_path / "s.fa")
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "s.fa").read_text().splitlines()
    assert sum(line.startswith(">") for line in lines) == 3
    assert all(set(line) <= set("ACGT") for line in lines if not line.startswith(">"))

    r = run("dna", "evaluate", tmp_path / "run", "--kmer", 3, "--out", tmp_path / "e.json")
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "e.json").read_text())
    assert [row["k"] for row in result["kmer"]] == [1, 2, 3]
    assert result["split"] == {"start": 18000, "stop": 20000, "length": 20000}
    assert result["lm"]["n_scored"] == 2000 and 1.5 < result["lm"]["bits_per_nt"] < 3.0
    assert "k-mer k=3" in r.output and "transformer LM" in r.output

    r = run("dna", "evaluate", "--fasta", slice_fasta, "--kmer", 2, "--held-out-fraction", 0.2,
            "--out", tmp_path / "k.json")
    assert r.exit_code == 0 and "lm" not in json.loads((tmp_path / "k.json").read_text())


@pytest.mark.parametrize("text", ["", "ACGT\n", ">a\nAC\n>b\nGT\n", ">a\nNNNN\n"])
def test_bad_fasta_exits_2(tmp_path, text):
    path = tmp_path / "bad.fa"
    path.write_text(text)
    r = run("dna", "evaluate", "--fasta", path, "--out", tmp_path / "e.json")
    assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output
    r = run("dna", "fit", "--fasta", path, "--max-steps", 1, "--out", tmp_path / "run")
    assert r.exit_code == 2


def test_nothing_to_evaluate_and_missing_file_exit_2(tmp_path):
    assert run("dna", "evaluate", "--kmer", 0, "--fasta", tmp_path / "x.fa", "--out", tmp_path / "e.json").exit_code == 2
    assert run("dna", "evaluate", "--fasta", tmp_path / "missing.fa", "--out", tmp_path / "e.json").exit_code == 2
