"""Causal nucleotide LM: causality, whole-context reach, exact scoring, training, sampling, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exprflow.backbones.nucleotide import CausalNucleotideNet
from exprflow.errors import ExprflowInputError
from exprflow.models.nucleotide_lm import NucleotideLM, _score_plan
from exprflow.representations.dna import NucleotideTokenizer

encode = NucleotideTokenizer().encode
BACKBONES = ["hyena", "transformer"]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_logits_at_i_ignore_tokens_after_i_and_reach_the_whole_context(backbone):
    torch.manual_seed(0)
    net = CausalNucleotideNet(backbone, width=16, depth=2).double()
    for p in net.parameters():  # adaLN-Zero starts as the identity: perturb so every path is live
        torch.nn.init.normal_(p, std=0.3)
    tokens = torch.randint(0, 4, (2, 40))
    y = net(tokens)
    assert y.shape == (2, 40, 4)
    future = tokens.clone()
    future[:, 25:] = (future[:, 25:] + 1) % 4
    torch.testing.assert_close(net(future)[:, :25], y[:, :25])
    assert not torch.allclose(net(future)[:, 25:], y[:, 25:])
    first = tokens.clone()
    first[:, 0] = (first[:, 0] + 2) % 4
    assert (net(first)[:, -1] - y[:, -1]).abs().max() > 1e-8  # the last position sees the first token


def test_score_plan_scores_every_target_once_with_the_context_budget():
    n, context, stride = 103, 16, 5
    plan = _score_plan(n, 12, context, stride)
    targets = [t for _, t0, t1 in plan for t in range(t0, t1 + 1)]
    assert targets == list(range(12, n))
    for s, t0, t1 in plan:
        assert t1 - s <= context and t0 - s >= min(context - stride + 1, t0)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_strided_scoring_matches_a_direct_computation(backbone, genome_slice):
    torch.manual_seed(1)
    lm = NucleotideLM(backbone=backbone, context=16, width=16, depth=1)
    for p in lm.net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    tokens, prefix = encode(genome_slice[100:160]), encode(genome_slice[:100])
    out = lm.bits_per_nucleotide(tokens, prefix=prefix, stride=1)  # every target sees exactly 16 nt
    assert out["n_scored"] == 60 and out["min_context"] == 16
    full = torch.from_numpy(np.concatenate([prefix, tokens]).astype(np.int64))
    bits = []
    with torch.no_grad():
        for t in range(100, 160):
            logp = torch.log_softmax(lm.net(full[None, t - 16:t])[0, -1], -1)
            bits.append(-logp[full[t]].item() / np.log(2))
    assert out["bits_per_nt"] == pytest.approx(np.mean(bits), rel=1e-5)
    strided = lm.bits_per_nucleotide(tokens, prefix=prefix)  # stride 8: contexts 9..16
    assert strided["min_context"] == 9 and strided["n_scored"] == 60


def test_uniform_network_gives_two_bits(genome_slice):
    lm = NucleotideLM(context=32, width=8, depth=1)
    torch.nn.init.zeros_(lm.net.head.weight)
    torch.nn.init.zeros_(lm.net.head.bias)
    tokens = encode(genome_slice[:300])
    out = lm.bits_per_nucleotide(tokens)
    assert out["bits_per_nt"] == pytest.approx(2.0) and out["n_scored"] == 299  # the first has no context
    assert lm.bits_per_nucleotide(encode("ACNNGT"), prefix=tokens)["n_scored"] == 4  # N targets skipped


@pytest.fixture(scope="module")
def periodic_lm():
    """A small Hyena LM trained on a periodic sequence (period 5)."""
    lm = NucleotideLM(backbone="hyena", context=32, width=16, depth=1, batch_size=8, lr=1e-2)
    lm.train([encode("ACGGT" * 200)], max_steps=80, seed=0, progress_bar=False)
    return lm


def test_training_learns_a_periodic_sequence(periodic_lm):
    first = np.mean([b for _, b in periodic_lm.history[:5]])
    last = np.mean([b for _, b in periodic_lm.history[-5:]])
    assert first > 1.5 and last < 0.3
    assert periodic_lm.bits_per_nucleotide(encode("ACGGT" * 20), prefix=encode("ACGGT"))["bits_per_nt"] < 0.3
    greedy = periodic_lm.sample(2, 15, prompt="ACGGTACGGT", temperature=0)
    assert greedy == ["ACGGTACGGTACGGT"] * 2


def test_sampling_shape_alphabet_and_seed(periodic_lm):
    a = periodic_lm.sample(3, 50, temperature=1.5, seed=7)
    assert len(a) == 3 and all(len(s) == 50 and set(s) <= set("ACGT") for s in a)
    assert periodic_lm.sample(3, 50, temperature=1.5, seed=7) == a
    assert periodic_lm.sample(3, 50, temperature=1.5, seed=8) != a
    assert len(periodic_lm.sample(1, 40, prompt="ACG")[0]) == 40  # longer than the context: a sliding window
    with pytest.raises(ExprflowInputError):
        periodic_lm.sample(1, 10, temperature=-1)


def test_save_load_round_trip(periodic_lm, tmp_path):
    periodic_lm.save(str(tmp_path / "lm"))
    loaded = NucleotideLM.load(str(tmp_path / "lm"))
    assert loaded.config == periodic_lm.config and loaded.history == periodic_lm.history
    tokens = encode("ACGGTTTACGGA" * 5)
    assert loaded.bits_per_nucleotide(tokens) == periodic_lm.bits_per_nucleotide(tokens)
    assert loaded.sample(2, 20, seed=3) == periodic_lm.sample(2, 20, seed=3)
    with pytest.raises(ExprflowInputError, match="already exists"):
        periodic_lm.save(str(tmp_path / "lm"))


def test_bad_options_are_clear_errors():
    with pytest.raises(ExprflowInputError, match="Unknown nucleotide language-model backbone"):
        NucleotideLM(backbone="lstm")
    with pytest.raises(ExprflowInputError, match="shorter than one window"):
        NucleotideLM(context=64, width=8, depth=1).train([encode("ACGT" * 10)], max_steps=1, progress_bar=False)


def test_hyena_filter_window_spans_the_whole_context():
    """The slowest Hyena channel decays as exp(-t) over t = lag / L in [0, 1): at the farthest lag of the
    window its envelope is still exp(-(L-1)/L) > 0.36, so that filter reaches the whole context."""
    net = CausalNucleotideNet("hyena", width=16, depth=1)
    filters = net.stack.blocks[0].mixer.filters
    L = 1024
    window = torch.exp(-filters.decay_rates.min() * (L - 1) / L)
    assert filters.two_sided is False and window > 0.36
    assert filters(L).shape == (2, 16, L)  # one-sided (causal) filters as long as the window
