"""What every exprflow generator shares: AnnData set-up, config handling, generation loop, save/load.

A concrete model (``StateFlow``, ``LatentFlow``) supplies five hooks::

    _fit_representation()            fit data-dependent parts on self.data (train split)
    _build_networks(n_conditions)    create the torch modules from self.config
    _generate_chunk(codes, n, ...)   one chunk of generated cells as a CSR count matrix
    _extra_state() / _load_extra(saved, tensors)   what save/load add to the shared fields
    _tensors()                       the flat dict of weights to save

so the scverse-style contract (``setup_anndata / train / generate / save / load``) is written once.
A model's ``train`` is decorated with :func:`exprflow.models.seeding.seeded_training`: a model not
trained yet has its networks built again from ``train``'s seed, whatever the global generator's state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

from exprflow import __version__
from exprflow.data import prepare_counts, read_adata
from exprflow.data.counts import warn_thin_training_data
from exprflow.errors import ExprflowInputError
from exprflow.backbones import BACKBONES
from exprflow.flows import RectifiedFlow, guided_velocity
from exprflow.flows.conditions import ConditionSpace, compositional_velocity, install_condition_embedding
from exprflow.models.conditions import (
    check_guidance, combination_obs, encode_combinations, normalize_condition_key, resolve_combinations,
)
from exprflow.models.history import history_from_json, history_to_json
from exprflow.models.output import generated_adata, model_repr, resolve_conditions
from exprflow.models.persistence import coerce_nested, config_from_dict, save_model_dir
from exprflow.models.seeding import DEFAULT_SEED, init_networks
from exprflow.models.setup import AnnDataSetup, check_same_setup, resolve_setup, write_setup
from exprflow.sampling import integrate
from exprflow.sampling.options import SamplingOptions
from exprflow.threads import thread_limit

logger = logging.getLogger(__name__)

#: backbone options used when a model's ``backbone_kwargs`` is None (others: the backbone's own defaults)
DEFAULT_BACKBONE_KWARGS = {"mlp": {"hidden": 256, "depth": 3}}

DEFAULT_GENERATE_BATCH = 8192
#: cells integrated together from which sampling counts as wide work (exprflow.threads): on 2 near-idle
#: cores, 20,000 PBMC3k cells at one Euler step went from ~15,900 to ~19,000 cells/s with 2 threads
WIDE_SAMPLING_CELLS = 4096

#: the sampler ``generate`` uses unless told otherwise (a reflowed model: one Euler step, models/reflow.py):
#: the defaults of :class:`exprflow.sampling.options.SamplingOptions`, where the choice is explained
DEFAULT_SAMPLER = {"solver": SamplingOptions.solver, "n_steps": SamplingOptions.n_steps}


def chunks_by_condition(order: np.ndarray, codes: np.ndarray | None, batch_size: int):
    """Slices of ``order`` of at most ``batch_size`` cells, never mixing condition levels."""
    bounds = [0, len(order)]
    if codes is not None:
        sorted_codes = codes[order]
        bounds = [0, *np.flatnonzero(np.diff(sorted_codes)) + 1, len(order)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        for start in range(lo, hi, batch_size):
            yield order[start : min(start + batch_size, hi)]


def _prepare_training_data(adata: AnnData, setup: AnnDataSetup):
    """Validated training data: in memory (:class:`~exprflow.data.CountData`) for an in-memory AnnData,
    on disk (:class:`~exprflow.data.backed.BackedCounts`, out-of-core training) for a backed one."""
    from exprflow.data.backed import is_backed, prepare_backed_counts

    prepare = prepare_backed_counts if is_backed(adata) else prepare_counts
    single_key = None if isinstance(setup.condition_key, list) else setup.condition_key  # several: see conditions.py
    return prepare(adata, layer=setup.layer, condition_key=single_key, require_counts=True)


class FlowModel:
    """Base of the user-facing generators (see module docstring)."""

    config_cls: ClassVar[type]

    def __init__(self, adata: AnnData | str, layer: str | None = None,
                 condition_key: str | Sequence[str] | None = None, **config) -> None:
        adata = read_adata(adata)
        condition_key = normalize_condition_key(condition_key)
        setup = resolve_setup(adata, AnnDataSetup, type(self).__name__, layer=layer, condition_key=condition_key)
        self.setup = setup
        self.config = self._make_config(config)
        self.data = _prepare_training_data(adata, setup)
        warn_thin_training_data(self.data)
        self.var_names = list(self.data.var_names)
        self.levels = self.data.condition_levels
        self.train_codes = self.data.conditions
        self.condition_space = None
        if isinstance(setup.condition_key, list):  # several keys: packed label combinations
            self.condition_space, self.train_codes = encode_combinations(adata, setup.condition_key, self.data.kept)
        self.var = adata.var  # read only (gene-aware backbones look up columns such as genomic position)
        self._fit_representation()
        init_networks(self, DEFAULT_SEED)  # train(seed=...) initialises them again from its own seed
        self.plan = None
        self.history: dict[str, pd.DataFrame] = {}
        self.train_seconds: float | None = None
        self.is_trained = False

    def __repr__(self) -> str:
        return model_repr(self)

    @property
    def n_conditions(self) -> int:
        if self.condition_space is not None:
            return self.condition_space.null_code
        return len(self.levels) if self.levels else 0

    @property
    def condition_keys(self) -> list[str]:
        """The condition keys (obs columns), none, one or several."""
        key = self.setup.condition_key
        return [] if key is None else ([key] if isinstance(key, str) else list(key))

    @classmethod
    def _make_config(cls, overrides: dict):
        base = cls.config_cls()
        unknown = set(overrides) - set(asdict(base))
        if unknown:
            raise ExprflowInputError(
                f"Unknown {cls.__name__} option(s) {sorted(unknown)}; valid: {sorted(asdict(base))}."
            )
        return replace(base, **coerce_nested(cls.config_cls, overrides))

    @classmethod
    def setup_anndata(cls, adata: AnnData, layer: str | None = None,
                      condition_key: str | Sequence[str] | None = None) -> None:
        """Validate ``adata`` and store which layer holds counts and which obs column(s) hold the condition.

        The setup is written to ``adata.uns["_exprflow_setup"]`` (the one change exprflow ever makes to
        the user's AnnData, as scvi-tools' ``setup_anndata`` does), so copies, views and subsets keep it;
        :func:`~exprflow.models.setup.view_anndata_setup` shows it.

        Parameters
        ----------
        adata
            Cells x genes with raw integer counts in ``X`` or in ``layers[layer]`` (not a view).
        layer
            Layer holding the counts; ``None`` reads ``X``.
        condition_key
            ``obs`` column of the condition to generate by (``None``: an unconditional model), or a list
            of columns (label combinations, e.g. ``["cell_type", "donor"]``; see
            :mod:`exprflow.models.conditions`).
        """
        condition_key = normalize_condition_key(condition_key)
        setup = AnnDataSetup(layer=layer, condition_key=condition_key)
        data = _prepare_training_data(adata, setup)  # validate now
        if isinstance(condition_key, list):
            encode_combinations(adata, condition_key, data.kept)
        write_setup(adata, setup, cls.__name__)

    # ------------------------------------------------------------------ hooks
    def _fit_representation(self) -> None:
        raise NotImplementedError

    def _build_networks(self, n_conditions: int) -> None:
        raise NotImplementedError

    def _init_networks(self) -> None:  # called by exprflow.models.seeding.init_networks
        self._build_networks(self.n_conditions)

    def _generate_chunk(self, codes: np.ndarray | None, n: int, *, n_steps: int, solver: str, guidance: float,
                        generator: torch.Generator, rng: np.random.Generator) -> sp.csr_matrix:
        raise NotImplementedError

    def _extra_state(self) -> dict:
        return {}

    def _load_extra(self, saved: dict, tensors: dict[str, torch.Tensor]) -> None:
        return None

    def _tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _backbone_kwargs(self) -> dict:
        """The configured backbone options, or the backbone's defaults when none are given."""
        if self.config.backbone_kwargs is not None:
            return dict(self.config.backbone_kwargs)
        return dict(DEFAULT_BACKBONE_KWARGS.get(self.config.backbone, {}))

    def _objective(self) -> RectifiedFlow:
        """The rectified-flow objective from the config's ``time_sampler``, ``coupling`` and ``cond_dropout``."""
        c = self.config
        return RectifiedFlow(time_sampler=c.time_sampler, coupling=c.coupling, cond_dropout=c.cond_dropout,
                             conditions=self.condition_space)

    def _make_backbone(self, dim: int):
        """The configured backbone for states of width ``dim``, with one embedding per condition attribute
        when there are several condition keys."""
        if self.condition_space is None:
            return BACKBONES.get(self.config.backbone)(dim=dim, n_conditions=self.n_conditions,
                                                      **self._backbone_kwargs())
        backbone = BACKBONES.get(self.config.backbone)(dim=dim, n_conditions=0, **self._backbone_kwargs())
        return install_condition_embedding(backbone, self.condition_space)

    # ------------------------------------------------------------ generation
    def _ema_weights(self):
        return nullcontext() if self.plan is None else self.plan.ema.swap(self.backbone)

    @torch.no_grad()
    def sample_states(self, codes: np.ndarray | None, n: int, *, n_steps: int, solver: str,
                      guidance: float | Mapping[str, float], generator: torch.Generator,
                      x0: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """Integrate the flow for ``n`` cells (from ``x0``, default fresh noise); returns the flow's states
        and the number of function evaluations."""
        if x0 is None:
            x0 = torch.randn(n, self.backbone.dim, generator=generator)
        cond = None if codes is None else torch.as_tensor(codes, dtype=torch.long)
        self.backbone.eval()
        # a flow on a small state is small work, unless thousands of cells are integrated together
        width = None if n >= WIDE_SAMPLING_CELLS else self.backbone.dim
        with self._ema_weights(), thread_limit(width):
            if isinstance(guidance, Mapping):
                velocity = compositional_velocity(self.backbone, self.condition_space, cond, guidance,
                                                  getattr(self, "_composition", "joint"))
            else:
                velocity = guided_velocity(self.backbone, cond, guidance)
            result = integrate(velocity, x0, solver=solver, n_steps=n_steps)
        return result.x, result.nfe

    def generate(
        self,
        n_cells: int | None = None,
        conditions: Mapping[str, int] | Sequence[str] | str | pd.DataFrame | None = None,
        n_steps: int | None = None,
        solver: str | None = None,
        guidance: float | Mapping[str, float] = 1.0,
        seed: int = 0,
        batch_size: int | None = None,
        composition: str = "joint",
        name_prefix: str = "gen",
    ) -> AnnData:
        """Generate cells as an AnnData (integer sparse counts, conditions in obs, provenance in uns).

        ``conditions``: a mapping level -> number of cells, one level per cell, or one level with
        ``n_cells``; with ``n_cells`` only, levels follow their training frequencies. ``batch_size``:
        cells integrated together; ``None`` takes the backbone's ``generate_batch_size`` where it has
        one (backbones with a token per gene hold ``cells x genes x width`` activations), else 8,192.

        ``solver`` / ``n_steps``: both ``None`` take :attr:`default_sampler`; ``n_steps`` alone keeps
        the Euler solver (as in earlier versions), ``solver`` alone the default's step count.

        With several condition keys, ``conditions`` is a DataFrame of combinations or a dict attribute ->
        level (:func:`exprflow.models.conditions.resolve_combinations`; attributes left out are
        marginalised), and ``guidance`` may be a dict attribute -> weight, composed as ``composition``
        (``"joint"`` or ``"product"``, :mod:`exprflow.flows.conditions`).

        Cells are named ``{name_prefix}_{token}_{i}`` with a token new to each call, so the outputs of
        several calls concatenate without duplicate names.
        """
        if not self.is_trained:
            raise ExprflowInputError("The model is not trained yet: call train() (or load a trained model) first.")
        default = self.default_sampler
        solver = solver or (default["solver"] if n_steps is None else "euler")
        n_steps = n_steps or default["n_steps"]
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        guidance = check_guidance(guidance, composition, self.condition_space)
        self._composition = composition
        if self.condition_space is not None:
            n, codes = resolve_combinations(n_cells, conditions, self.condition_space, self.train_codes, rng)
        else:
            n, codes = resolve_conditions(n_cells, conditions, self.levels, self.train_codes, rng)
        # Cells are generated one condition level at a time (then put back in request order): every
        # cell of a chunk shares its (t, cond) modulation, which the backbone then broadcasts.
        order = np.arange(n) if codes is None else np.argsort(codes, kind="stable")
        batch_size = batch_size or int(getattr(self.backbone, "generate_batch_size", DEFAULT_GENERATE_BATCH))
        chunks, self._last_nfe, start = [], 0, time.perf_counter()
        for idx in chunks_by_condition(order, codes, batch_size):
            sl = None if codes is None else codes[idx]
            chunks.append(self._generate_chunk(sl, len(idx), n_steps=n_steps, solver=solver, guidance=guidance,
                                               generator=gen, rng=rng))
        seconds = time.perf_counter() - start
        counts = sp.vstack(chunks).tocsr()[np.argsort(order, kind="stable")]
        provenance = {
            "model": type(self).__name__, "version": __version__, "n_steps": n_steps, "solver": solver,
            "nfe": self._last_nfe, "guidance": guidance, "seed": seed, "sampling_seconds": seconds,
            "config": asdict(self.config),
        }
        if self.condition_space is not None:
            provenance["composition"] = composition
            out = generated_adata(counts, self.var_names, condition_key=None, levels=None, codes=None,
                                  provenance=provenance, name_prefix=name_prefix)
            for key, column in combination_obs(self.condition_space, codes, out.obs_names).items():
                out.obs[key] = column
            return out
        return generated_adata(
            counts, self.var_names, condition_key=self.setup.condition_key,
            levels=self.levels, codes=codes, provenance=provenance, name_prefix=name_prefix,
        )

    @property
    def default_sampler(self) -> dict:
        """``{"solver", "n_steps"}`` that ``generate`` uses by default: :data:`DEFAULT_SAMPLER`, or one
        Euler step after :meth:`reflow`."""
        info = getattr(self, "reflow_info", None)
        return dict(info["sampler"]) if info else dict(DEFAULT_SAMPLER)

    def reflow(self, n_pairs: int = 20_000, steps: int = 2000, **kwargs):
        """Straighten the flow so one Euler step suffices: retrain it on (noise, generated) pairs (Liu et
        al. 2022); see :func:`exprflow.models.reflow.reflow` for ``n_steps``/``solver`` of the teacher,
        ``batch_size``, ``seed``, ``progress_bar`` and the training options. Returns ``self``."""
        from exprflow.models.reflow import reflow

        return reflow(self, n_pairs, steps, **kwargs)

    def generate_to_file(self, path: str, n_cells: int | None = None,
                         conditions: Mapping[str, int] | Sequence[str] | str | None = None, **kwargs):
        """Generate cells in chunks straight into an ``.h5ad`` file (bounded memory, resumable, atomic).

        See :func:`exprflow.models.streaming.generate_to_file` for ``chunk_size``, ``seed``, ``resume``,
        ``overwrite``, ``progress_bar`` and the contract; other keyword arguments go to :meth:`generate`.
        """
        from exprflow.models.streaming import generate_to_file

        if self.condition_space is not None:
            raise ExprflowInputError("generate_to_file takes models with one condition key; with several, "
                                     "call generate() and write the result (exprflow.io).")
        return generate_to_file(self, path, n_cells, conditions, **kwargs)

    # ----------------------------------------------------------- persistence
    def save(self, dir_path: str, overwrite: bool = False) -> None:
        """Save to a directory (``config.json`` + ``weights.pt``), atomically."""
        if not self.is_trained:
            raise ExprflowInputError("Nothing to save: the model is not trained.")
        config = {
            "model": type(self).__name__, "exprflow_version": __version__, "torch_version": torch.__version__,
            "config": asdict(self.config), "setup": asdict(self.setup), "var_names": self.var_names,
            "condition_levels": self.levels,
            "train_condition_counts": None if self.train_codes is None or self.levels is None else np.bincount(
                self.train_codes, minlength=len(self.levels)).tolist(),
            "condition_space": None if self.condition_space is None else {
                **self.condition_space.state_dict(),
                "train_combinations": [[int(c), int(k)] for c, k in zip(*np.unique(self.train_codes, return_counts=True))],
            },
            "train_seconds": self.train_seconds, "history": history_to_json(self.history),
            "reflow": getattr(self, "reflow_info", None), **self._extra_state(),
        }
        save_model_dir(dir_path, config, self._tensors(), overwrite=overwrite)

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | None = None):
        """Load a saved model; with ``adata``, check that its genes match the model's."""
        from exprflow.models.restore import read_saved

        saved, tensors = read_saved(cls, dir_path, adata)
        self = cls.__new__(cls)
        self.config = config_from_dict(cls.config_cls, saved["config"])
        self.setup = AnnDataSetup(**saved["setup"])
        if adata is not None:
            check_same_setup(self.setup, adata, cls.__name__)
        self.var_names = list(saved["var_names"])
        self.levels = saved["condition_levels"]
        counts = saved.get("train_condition_counts")
        self.train_codes = None if counts is None else np.repeat(np.arange(len(counts)), counts)
        space = saved.get("condition_space")
        self.condition_space = None if space is None else ConditionSpace.from_state(space)
        if space is not None:
            combos = np.asarray(space["train_combinations"], dtype=np.int64).reshape(-1, 2)
            self.train_codes = np.repeat(combos[:, 0], combos[:, 1])
        self.data = None
        self.var = None
        self.plan = None
        self.history = history_from_json(saved.get("history"))
        self.train_seconds = saved.get("train_seconds")
        self.reflow_info = saved.get("reflow")
        try:
            self._build_networks(self.n_conditions)
            self._load_extra(saved, tensors)
        except (RuntimeError, KeyError, ValueError) as exc:  # weights of another shape: not this config's model
            if isinstance(exc, ExprflowInputError):
                raise
            raise ExprflowInputError(
                f"The weights in {dir_path} do not fit its config.json ({len(self.var_names)} genes, "
                f"{self.n_conditions} condition levels): {str(exc).splitlines()[0][:300]}. The directory is corrupted "
                "or mixed from two models; re-save the model or train it again."
            ) from None
        self.is_trained = True
        return self
