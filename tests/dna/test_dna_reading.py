"""FASTA reading, the nucleotide tokenizer and the held-out split."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from exprflow.errors import ExprflowInputError
from exprflow.representations.dna import NucleotideTokenizer, held_out_split, read_fasta


def test_tokenizer_round_trip_and_codes():
    tok = NucleotideTokenizer()
    tokens = tok.encode("ACGTN")
    assert tokens.tolist() == [0, 1, 2, 3, 4]
    assert tok.decode(tok.encode("GATTACANNC")) == "GATTACANNC"
    assert tok.decode(tok.encode("acgtRYkmU")) == "ACGTNNNNT"  # lower case, IUPAC codes -> N, U -> T
    with pytest.raises(ExprflowInputError, match="not a nucleotide code"):
        tok.encode("ACGX")


def test_gzip_and_plain_read_the_same_record(tmp_path, genome_slice):
    text = ">chr\n" + "\n".join(genome_slice[i:i + 60] for i in range(0, 4980, 60)) + "\n"
    plain, packed = tmp_path / "a.fa", tmp_path / "a.fa.gz"
    plain.write_text(text)
    with gzip.open(packed, "wt") as fh:
        fh.write(text)
    a, b = read_fasta(plain), read_fasta(packed)
    assert a.name == b.name == "chr"
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert NucleotideTokenizer().decode(a.tokens) == genome_slice[:4980]


def test_ambiguity_codes_and_lowercase_are_counted(tmp_path):
    path = tmp_path / "x.fa"
    path.write_text(">x desc\nacgtNN\nRYAC\n")
    rec = read_fasta(path)
    assert NucleotideTokenizer().decode(rec.tokens) == "ACGTNNNNAC"
    assert rec.counts["N"] == 4 and rec.counts["ambiguous_to_N"] == 2 and rec.counts["lowercase"] == 4
    assert rec.counts["A"] == 2 and rec.counts["C"] == 2


def test_multi_record_needs_a_choice(tmp_path):
    path = tmp_path / "m.fa"
    path.write_text(">one\nACGT\n>two\nGGGG\n")
    with pytest.raises(ExprflowInputError, match="2 records"):
        read_fasta(path)
    assert NucleotideTokenizer().decode(read_fasta(path, record="two").tokens) == "GGGG"
    with pytest.raises(ExprflowInputError, match="no record 'three'"):
        read_fasta(path, record="three")


@pytest.mark.parametrize("text, message", [("", "empty"), ("ACGT\n", "not FASTA"), (">x\nNNNN\n", "no A, C, G or T"),
                                           (">x\nAC-GT\n", "not a nucleotide code")])
def test_bad_fasta_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.fa"
    path.write_text(text)
    with pytest.raises(ExprflowInputError, match=message):
        read_fasta(path)


def test_held_out_split_is_contiguous_and_disjoint():
    tokens = np.arange(1000)
    split = held_out_split(1000)
    held = split.held_out(tokens)
    assert held.tolist() == list(range(900, 1000))  # the last 10 %
    train = np.concatenate(split.train_segments(tokens))
    assert not set(train) & set(held) and len(train) + len(held) == 1000
    mid = held_out_split(1000, fraction=0.2, start=0.5)
    assert mid.held_out(tokens).tolist() == list(range(500, 700))
    assert [s.tolist()[0] for s in mid.train_segments(tokens)] == [0, 700]  # two segments, none spans the gap
    with pytest.raises(ExprflowInputError):
        held_out_split(1000, fraction=1.5)
    with pytest.raises(ExprflowInputError):
        held_out_split(1000, fraction=0.2, start=0.9)
