"""The contract of a flow's representation, and its registry ``REPRESENTATIONS``.

A representation maps cells to the flow's *standardised* states ``s (n, dim)`` (mean 0, sd 1 per
coordinate on the train cells) and back to expression::

    fit(X, *, batches=None, library=None, optim=None, budget=None, trainer=None) -> train states (n, dim)
    encode(X, *, batches=None, library=None) -> states        decode(s, rng, *, sample=True, ...) -> CSR
    state_dict() -> (JSON-able fields, tensors)                load_state_dict(fields, tensors) -> self

``fit`` trains what needs training (the count VAE's phase, with the trainer options and the phase
budget of :mod:`exprflow.training.options`) and fits the standardisation. Entries: ``"count_vae"``
(:mod:`~exprflow.representations.count_latent`), ``"gaussian"``
(:mod:`~exprflow.representations.gaussian`).
"""

from __future__ import annotations

import numpy as np

from exprflow.registry import Registry

REPRESENTATIONS: Registry = Registry("representation")


class Standardiser:
    """Per-coordinate standardisation of states, fitted on the train cells (float32 arithmetic)."""

    state_mean: np.ndarray | None = None
    state_std: np.ndarray | None = None

    def fit_standardise(self, states: np.ndarray) -> np.ndarray:
        self.state_mean = states.mean(0)
        self.state_std = np.maximum(states.std(0), 1e-6)
        return self.standardise(states)

    def standardise(self, states: np.ndarray) -> np.ndarray:
        return ((states - self.state_mean) / self.state_std).astype(np.float32)

    def unstandardise(self, s: np.ndarray) -> np.ndarray:
        return s * self.state_std + self.state_mean
