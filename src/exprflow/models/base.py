"""What every exprflow generator shares: AnnData set-up, config handling, generation loop, save/load.

A concrete model (``StateFlow``, ``LatentFlow``) supplies five hooks::

    _fit_representation()            fit data-dependent parts on self.data (train split)
    _build_networks(n_conditions)    create the torch modules from self.config
    _generate_chunk(codes, n, ...)   one chunk of generated cells as a CSR count matrix
    _extra_state() / _load_extra(saved, tensors)   what save/load add to the shared fields
    _tensors()                       the flat dict of weights to save

so the scverse-style contract (``setup_anndata / train / generate / save / load``) is written once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, fields, is_dataclass, replace
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData

from exprflow import __version__
from exprflow.data import prepare_counts, read_adata
from exprflow.errors import ExprflowInputError
from exprflow.flows import RectifiedFlow, guided_velocity
from exprflow.models.output import generated_adata, resolve_conditions
from exprflow.models.persistence import save_model_dir
from exprflow.models.setup import AnnDataSetup, recall_setup, remember_setup
from exprflow.sampling import integrate
from exprflow.threads import thread_limit

logger = logging.getLogger(__name__)

#: backbone options used when a model's ``backbone_kwargs`` is None (others: the backbone's own defaults)
DEFAULT_BACKBONE_KWARGS = {"mlp": {"hidden": 256, "depth": 3}}

DEFAULT_GENERATE_BATCH = 8192
#: cells integrated together from which sampling counts as wide work (exprflow.threads): on 2 near-idle
#: cores, 20,000 PBMC3k cells at one Euler step went from ~15,900 to ~19,000 cells/s with 2 threads
WIDE_SAMPLING_CELLS = 4096

#: the sampler ``generate`` uses unless told otherwise (a reflowed model: one Euler step, models/reflow.py).
#: Heun with 4 steps (8 evaluations) kept PBMC3k's protocol metrics at those of 16 Euler steps
#: (BENCHMARKS.md, generation speed); fewer evaluations without reflow did not.
DEFAULT_SAMPLER = {"solver": "heun", "n_steps": 4}


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
    return prepare(adata, layer=setup.layer, condition_key=setup.condition_key, require_counts=True)


def _coerce_nested(config_cls: type, d: dict) -> dict:
    """Turn dict values of nested-dataclass fields (e.g. ``optim``) back into their dataclasses."""
    out = dict(d)
    for f in fields(config_cls):
        default = f.default
        if isinstance(out.get(f.name), dict) and is_dataclass(default):
            out[f.name] = type(default)(**out[f.name])
    return out


def config_from_dict(config_cls: type, d: dict):
    """Rebuild a (possibly nested) frozen config dataclass from its ``asdict`` form."""
    return config_cls(**_coerce_nested(config_cls, d))


class FlowModel:
    """Base of the user-facing generators (see module docstring)."""

    config_cls: ClassVar[type]

    def __init__(self, adata: AnnData | str, layer: str | None = None, condition_key: str | None = None, **config) -> None:
        adata = read_adata(adata)
        setup = recall_setup(adata) or AnnDataSetup(layer=layer, condition_key=condition_key)
        if layer is not None or condition_key is not None:
            setup = AnnDataSetup(layer=layer or setup.layer, condition_key=condition_key or setup.condition_key)
        self.setup = setup
        self.config = self._make_config(config)
        self.data = _prepare_training_data(adata, setup)
        self.var_names = list(self.data.var_names)
        self.levels = self.data.condition_levels
        self.train_codes = self.data.conditions
        self.var = adata.var  # read only (gene-aware backbones look up columns such as genomic position)
        self._fit_representation()
        self._build_networks(self.n_conditions)
        self.plan = None
        self.history: list = []
        self.train_seconds: float | None = None
        self.is_trained = False

    @property
    def n_conditions(self) -> int:
        return len(self.levels) if self.levels else 0

    @classmethod
    def _make_config(cls, overrides: dict):
        base = cls.config_cls()
        unknown = set(overrides) - set(asdict(base))
        if unknown:
            raise ExprflowInputError(
                f"Unknown {cls.__name__} option(s) {sorted(unknown)}; valid: {sorted(asdict(base))}."
            )
        return replace(base, **_coerce_nested(cls.config_cls, overrides))

    @classmethod
    def setup_anndata(cls, adata: AnnData, layer: str | None = None, condition_key: str | None = None) -> None:
        """Remember which layer holds counts and which obs column is the condition (adata is not modified)."""
        _prepare_training_data(adata, AnnDataSetup(layer=layer, condition_key=condition_key))  # validate now
        remember_setup(adata, AnnDataSetup(layer=layer, condition_key=condition_key))

    # ------------------------------------------------------------------ hooks
    def _fit_representation(self) -> None:
        raise NotImplementedError

    def _build_networks(self, n_conditions: int) -> None:
        raise NotImplementedError

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
        return RectifiedFlow(time_sampler=c.time_sampler, coupling=c.coupling, cond_dropout=c.cond_dropout)

    # ------------------------------------------------------------ generation
    def _ema_weights(self):
        return nullcontext() if self.plan is None else self.plan.ema.swap(self.backbone)

    @torch.no_grad()
    def sample_states(self, codes: np.ndarray | None, n: int, *, n_steps: int, solver: str, guidance: float,
                      generator: torch.Generator, x0: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """Integrate the flow for ``n`` cells (from ``x0``, default fresh noise); returns the flow's states
        and the number of function evaluations."""
        if x0 is None:
            x0 = torch.randn(n, self.backbone.dim, generator=generator)
        cond = None if codes is None else torch.as_tensor(codes, dtype=torch.long)
        self.backbone.eval()
        # a flow on a small state is small work, unless thousands of cells are integrated together
        width = None if n >= WIDE_SAMPLING_CELLS else self.backbone.dim
        with self._ema_weights(), thread_limit(width):
            velocity = guided_velocity(self.backbone, cond, guidance)
            result = integrate(velocity, x0, solver=solver, n_steps=n_steps)
        return result.x, result.nfe

    def generate(
        self,
        n_cells: int | None = None,
        conditions: Mapping[str, int] | Sequence[str] | str | None = None,
        n_steps: int | None = None,
        solver: str | None = None,
        guidance: float = 1.0,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> AnnData:
        """Generate cells as an AnnData (integer sparse counts, conditions in obs, provenance in uns).

        ``conditions``: a mapping level -> number of cells, one level per cell, or one level with
        ``n_cells``; with ``n_cells`` only, levels follow their training frequencies. ``batch_size``:
        cells integrated together; ``None`` takes the backbone's ``generate_batch_size`` where it has
        one (backbones with a token per gene hold ``cells x genes x width`` activations), else 8,192.
        ``solver`` / ``n_steps``: both ``None`` take :attr:`default_sampler`; ``n_steps`` alone keeps
        the Euler solver (as in earlier versions), ``solver`` alone the default's step count.
        """
        if not self.is_trained:
            raise ExprflowInputError("The model is not trained yet: call train() (or load a trained model) first.")
        default = self.default_sampler
        solver = solver or (default["solver"] if n_steps is None else "euler")
        n_steps = n_steps or default["n_steps"]
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
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
        return generated_adata(
            counts, self.var_names, condition_key=self.setup.condition_key,
            levels=self.levels, codes=codes, provenance=provenance,
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
            "train_condition_counts": None if self.train_codes is None else np.bincount(
                self.train_codes, minlength=len(self.levels)).tolist(),
            "train_seconds": self.train_seconds, "history": self.history, "reflow": getattr(self, "reflow_info", None),
            **self._extra_state(),
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
        self.var_names = list(saved["var_names"])
        self.levels = saved["condition_levels"]
        counts = saved.get("train_condition_counts")
        self.train_codes = None if counts is None else np.repeat(np.arange(len(counts)), counts)
        self.data = None
        self.var = None
        self.plan = None
        self.history = saved.get("history", [])
        self.train_seconds = saved.get("train_seconds")
        self.reflow_info = saved.get("reflow")
        self._build_networks(self.n_conditions)
        self._load_extra(saved, tensors)
        self.is_trained = True
        return self
