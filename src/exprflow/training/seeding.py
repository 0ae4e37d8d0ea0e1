"""Seeded training: ``train(seed=s)`` of a model not trained yet is a function of ``s`` and the data alone.

Models build their networks when constructed (so ``model.backbone`` exists before training).
:func:`init_networks` builds them from a given seed on forked random state, and :func:`seeded_training`
wraps a model's ``train`` so that

- a model not trained yet has its networks initialised from ``seed`` first (unless they already were,
  and have not been trained since), whatever ran before in the process;
- the whole call runs on forked random state: the caller's torch, NumPy and Python generators are,
  afterwards, as they were before the call.

A trained model (a second ``train`` call continues from its weights) or a resumed run (weights read
from the checkpoint) is not re-initialised.
"""

from __future__ import annotations

import functools
import inspect
import random
from contextlib import contextmanager

import numpy as np
import torch

#: the seed networks are built from when a model is constructed (``train``'s default seed)
DEFAULT_SEED = 0


@contextmanager
def preserved_rng():
    """Run a block on forked random state: torch (CPU, and CUDA devices already initialised), NumPy's
    and Python's global generators are restored on exit."""
    np_state, py_state = np.random.get_state(), random.getstate()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def init_networks(model, seed: int) -> None:
    """Build ``model``'s networks (its ``_init_networks()``) with torch's CPU generator seeded by ``seed``,
    leaving the caller's random state as it was."""
    with preserved_rng():
        torch.default_generator.manual_seed(int(seed))
        model._init_networks()
    model._networks_seed = int(seed)


def seeded_training(train=None, *, initialise: bool = True):
    """Decorate a model's ``train`` method (which takes a ``seed`` argument); see the module docstring.

    ``initialise=False`` (a method that trains one part on weights the user may have set, such as
    ``PopulationFlow.train_flow``): only the caller's random state is kept.
    """
    if train is None:
        return functools.partial(seeded_training, initialise=initialise)
    signature = inspect.signature(train)

    @functools.wraps(train)
    def wrapper(self, *args, **kwargs):
        if getattr(self, "_in_training", False):  # called by another decorated method (train_flow by train)
            return train(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        seed = int(bound.arguments["seed"])
        with preserved_rng():
            fresh = initialise and not getattr(self, "is_trained", False)
            if fresh and hasattr(self, "_init_networks") and getattr(self, "_networks_seed", None) != seed:
                init_networks(self, seed)
            self._networks_seed = None  # the weights change from here on
            self._in_training = True
            try:
                return train(self, *args, **kwargs)
            finally:
                self._in_training = False

    return wrapper
