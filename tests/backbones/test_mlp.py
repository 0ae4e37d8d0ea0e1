"""MLP backbone specifics: adaLN-Zero identity at initialisation, embeddings, configuration."""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from exprflow.backbones import BACKBONES, MLPBackbone, sinusoidal_embedding


def test_registered():
    assert BACKBONES.get("mlp") is MLPBackbone


def test_fresh_blocks_are_identity_and_output_is_zero():
    torch.manual_seed(0)
    model = MLPBackbone(dim=7, n_conditions=2, **MLPBackbone.small_config())
    x = torch.randn(5, 7)
    t = torch.rand(5)
    cond = torch.tensor([0, 1, 2, 0, 1])
    c_act, inverse = model.conditioning(t, cond)
    h = model.input_proj(x)
    for block in model.blocks:
        torch.testing.assert_close(block(h, c_act, inverse), h)
    assert torch.count_nonzero(model(x, t, cond)) == 0


def test_input_and_output_are_plain_linear():
    model = MLPBackbone(dim=9, **MLPBackbone.small_config())
    assert type(model.input_proj) is nn.Linear and model.input_proj.in_features == 9
    assert type(model.output_proj) is nn.Linear and model.output_proj.out_features == 9


def test_shared_time_deduplicates_conditioning():
    model = MLPBackbone(dim=4, n_conditions=3, **MLPBackbone.small_config())
    t = torch.full((10,), 0.25)
    cond = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 0])
    with torch.no_grad():
        c_act, inverse = model.conditioning(t, cond)
    assert c_act.shape[0] == 4 and inverse.shape == (10,)
    torch.testing.assert_close(c_act[inverse], torch.nn.functional.silu(
        model.time_embed(t) + model.cond_embed(cond)))


def test_scalar_time_is_broadcast():
    model = MLPBackbone(dim=4, **MLPBackbone.small_config())
    x = torch.randn(3, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x, 0.5), model(x, torch.full((3,), 0.5)))


def test_config_roundtrip():
    model = MLPBackbone(dim=6, n_conditions=2, hidden=16, depth=3)
    clone = MLPBackbone(**asdict(model.config))
    assert clone.config == model.config
    assert sum(p.numel() for p in clone.parameters()) == sum(p.numel() for p in model.parameters())


def test_sinusoidal_embedding_distinguishes_times():
    emb = sinusoidal_embedding(torch.tensor([0.0, 0.001, 0.5, 1.0]), 32)
    assert emb.shape == (4, 32)
    torch.testing.assert_close(emb[0, :16], torch.ones(16))  # cos(0) = 1
    dists = torch.cdist(emb, emb)
    assert (dists + torch.eye(4)).min() > 1e-2
    assert sinusoidal_embedding(torch.rand(3), 7).shape == (3, 7)
