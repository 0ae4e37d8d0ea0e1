"""EMA of weights: warm-up formula, swap, state dict."""

from __future__ import annotations

import io

import torch
from torch import nn

from exprflow.flows import EMA


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    return model


def test_update_follows_warmup_formula():
    model = _model()
    ema = EMA(model, decay=0.9)
    w0 = model[0].weight.detach().clone()
    shadow = w0.clone()
    for n in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1)
        d = min(0.9, (1 + n) / (10 + n))
        assert abs(ema.current_decay() - d) < 1e-12
        ema.update(model)
        shadow = d * shadow + (1 - d) * model[0].weight.detach()
        torch.testing.assert_close(ema.shadow["0.weight"], shadow)
    # The shadow lags behind the weights but moved towards them.
    assert (ema.shadow["0.weight"] > w0).all() and (ema.shadow["0.weight"] < model[0].weight).all()
    # Integer buffers are copied, not averaged.
    model.train()(torch.randn(8, 3))
    ema.update(model)
    assert ema.shadow["1.num_batches_tracked"].item() == model[1].num_batches_tracked.item()


def test_swap_uses_shadow_and_restores():
    model = _model()
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.swap(model) as swapped:
        assert swapped is model
        torch.testing.assert_close(model[0].weight, ema.shadow["0.weight"])
        assert not torch.allclose(model[0].weight, original["0.weight"])
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, original[k])


def test_state_dict_roundtrip_weights_only():
    model = _model()
    ema = EMA(model, decay=0.99)
    with torch.no_grad():
        model[0].bias.add_(1.0)
    ema.update(model)
    buffer = io.BytesIO()
    torch.save(ema.state_dict(), buffer)
    buffer.seek(0)
    other = EMA(_model(), decay=0.5)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert other.decay == 0.99 and other.num_updates == 1
    for k, v in ema.shadow.items():
        torch.testing.assert_close(other.shadow[k], v)
    fresh = _model()
    other.copy_to(fresh)
    torch.testing.assert_close(fresh[0].bias, ema.shadow["0.bias"])
