"""k-mer Markov baselines: closed-form probabilities, add-one normalisation, N handling, 2 bits when uniform."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exprflow.errors import ExprflowInputError
from exprflow.metrics.kmer import KmerModel, kmer_table
from exprflow.representations.dna import NucleotideTokenizer

encode = NucleotideTokenizer().encode


def test_closed_form_on_a_tiny_sequence():
    train = [encode("AACAG")]
    # k = 1 (unigram): counts A3 C1 G1 T0 -> (3+1)/(5+4), ...
    np.testing.assert_allclose(KmerModel(1).fit(train).probabilities()[0], [4 / 9, 2 / 9, 2 / 9, 1 / 9])
    # k = 2: AA, AC, CA, AG -> row A = (1+1, 1+1, 1+1, 0+1) / (3+4); row G unseen -> uniform
    model = KmerModel(2).fit(train)
    np.testing.assert_allclose(model.probabilities()[0], [2 / 7, 2 / 7, 2 / 7, 1 / 7])
    np.testing.assert_allclose(model.probabilities()[2], [0.25] * 4)
    # score "AC" after the prefix "...G": A | G (uniform, 2 bits), C | A (-log2 2/7)
    out = model.bits_per_nucleotide(encode("AC"), prefix=encode("AACAG"))
    assert out["n_scored"] == 2
    assert out["bits_per_nt"] == pytest.approx((2 + math.log2(7 / 2)) / 2)


def test_add_one_rows_are_distributions(genome_slice):
    model = KmerModel(4).fit([encode(genome_slice)])
    probs = model.probabilities()
    assert probs.shape == (64, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert model.counts.sum() == len(genome_slice) - 3  # every 4-mer of an N-free sequence counted once


def test_uniform_model_gives_two_bits():
    model = KmerModel(1).fit([encode("ACGT" * 10)])
    assert model.bits_per_nucleotide(encode("GATTACA"))["bits_per_nt"] == pytest.approx(2.0)


def test_n_is_skipped_as_target_and_context():
    model = KmerModel(2).fit([encode("ACNGT")])
    assert model.counts.sum() == 2  # AC and GT; CN and NG hold an N
    out = model.bits_per_nucleotide(encode("ANCA"), prefix=encode("G"))
    # A|G scored; N target skipped; C|N skipped (N context); A|C scored
    assert out["n_scored"] == 2 and out["n_skipped"] == 2


def test_without_prefix_the_first_positions_are_skipped(genome_slice):
    tokens = encode(genome_slice[:500])
    out = KmerModel(5).fit([tokens]).bits_per_nucleotide(tokens)
    assert out["n_scored"] == 496 and out["no_context_positions"] == 4


def test_higher_order_helps_on_real_dna(genome_slice):
    tokens = encode(genome_slice)
    table = kmer_table([tokens[:16000]], tokens[16000:], prefix=tokens[:16000], ks=[1, 3])
    assert [row["k"] for row in table] == [1, 3]
    assert table[1]["bits_per_nt"] < table[0]["bits_per_nt"] < 2.01
    with pytest.raises(ExprflowInputError, match="k must lie"):
        KmerModel(0)
