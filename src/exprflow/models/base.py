"""What every exprflow generator shares: AnnData set-up, config handling, generation loop, save/load.

A concrete model (``StateFlow``, ``LatentFlow``) supplies five hooks::

    _fit_representation()            fit data-dependent parts on self.data (train split)
    _build_networks(n_conditions)    create the torch modules from self.config
    _generate_chunk(codes, n, ...)   one chunk of generated cells as a CSR count matrix
    _extra_state() / _load_extra(saved, tensors)   what save/load add to the shared fields
    _tensors()                       the flat dict of weights to save

so the scverse-style contract (``setup_anndata / train / generate / save / load``) is written once.
A model's ``train`` is decorated with :func:`exprflow.training.seeding.seeded_training`: a model not
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

from exprflow.backbones import BACKBONES
from exprflow.data import read_adata
from exprflow.data.counts import warn_thin_training_data
from exprflow.data.setup import AnnDataSetup, prepare_training_counts, resolve_setup, write_setup
from exprflow.errors import ExprflowInputError
from exprflow.flows import RectifiedFlow, guided_velocity
from exprflow.flows.conditions import compositional_velocity, install_condition_embedding
from exprflow.models.conditions import AttributeGuidance, encode_combinations, normalize_condition_key
from exprflow.output.anndata import model_repr
from exprflow.persistence.model_dir import coerce_nested, rename_options
from exprflow.sampling import integrate
from exprflow.sampling.options import SamplingOptions
from exprflow.threads import thread_limit
from exprflow.training.history import training_history
from exprflow.training.options import PhaseBudget, TrainerOptions, resolve_budgets
from exprflow.training.plans import FlowTrainingPlan
from exprflow.training.seeding import DEFAULT_SEED, init_networks, seeded_training

logger = logging.getLogger(__name__)

#: backbone options used when a model's ``backbone_kwargs`` is None (others: the backbone's own defaults)
DEFAULT_BACKBONE_KWARGS = {"mlp": {"hidden": 256, "depth": 3}}

#: cells integrated together from which sampling counts as wide work (exprflow.threads): on 2 near-idle
#: cores, 20,000 PBMC3k cells at one Euler step went from ~15,900 to ~19,000 cells/s with 2 threads
WIDE_SAMPLING_CELLS = 4096

#: the sampler ``generate`` uses unless told otherwise (a reflowed model: one Euler step, training/reflow.py):
#: the defaults of :class:`exprflow.sampling.options.SamplingOptions`, where the choice is explained
DEFAULT_SAMPLER = {"solver": SamplingOptions.solver, "n_steps": SamplingOptions.n_steps}


class FlowModel:
    """Base of the user-facing generators (see module docstring)."""

    config_cls: ClassVar[type]
    setup_cls: ClassVar[type] = AnnDataSetup
    #: training phases in order (exprflow.training.options); "vae" for models with a count VAE
    phases: ClassVar[tuple[str, ...]] = ("flow",)

    def __init__(self, adata: AnnData | str, layer: str | None = None,
                 condition_key: str | Sequence[str] | None = None, **config) -> None:
        adata = read_adata(adata)
        condition_key = normalize_condition_key(condition_key)
        setup = resolve_setup(adata, AnnDataSetup, type(self).__name__, layer=layer, condition_key=condition_key)
        self.setup = setup
        self.config = self._make_config(config)
        self.data = prepare_training_counts(adata, setup)
        warn_thin_training_data(self.data)
        self.var_names = list(self.data.var_names)
        self.levels = self.data.condition_levels
        self.train_codes = self.data.conditions
        self.condition_space = None
        if isinstance(setup.condition_key, list):  # several keys: packed label combinations
            self.condition_space, self.train_codes = encode_combinations(adata, setup.condition_key, self.data.kept)
        self.var = adata.var  # read only (gene-aware backbones look up columns such as genomic position)
        self._fit_representation()
        self._finish_init()

    def _finish_init(self) -> None:
        """Networks built from the default seed (``train(seed=...)`` builds them again from its own)."""
        init_networks(self, DEFAULT_SEED)
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
        overrides = rename_options(overrides, cls.__name__, cls.config_cls)
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
        :func:`~exprflow.data.setup.view_anndata_setup` shows it.

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
        data = prepare_training_counts(adata, setup)  # validate now
        if isinstance(condition_key, list):
            encode_combinations(adata, condition_key, data.kept)
        write_setup(adata, setup, cls.__name__)

    # ------------------------------------------------------------------ hooks
    def _fit_representation(self) -> None:
        raise NotImplementedError

    def _build_networks(self, n_conditions: int) -> None:
        raise NotImplementedError

    def _init_networks(self) -> None:  # called by exprflow.training.seeding.init_networks
        self._build_networks(self.n_conditions)

    def _generate_chunk(self, codes: np.ndarray | None, n: int, *, n_steps: int, solver: str, guidance: float,
                        generator: torch.Generator, rng: np.random.Generator) -> sp.csr_matrix:
        raise NotImplementedError

    def _extra_state(self) -> dict:
        return {}

    def _load_meta(self, saved: dict) -> None:  # what _build_networks needs after load, besides the config
        return None

    def _load_extra(self, saved: dict, tensors: dict[str, torch.Tensor]) -> None:
        return None

    def _tensors(self) -> dict[str, torch.Tensor]:
        """The weights to save: the backbone's and, after training, their EMA."""
        tensors = {f"backbone.{k}": v for k, v in self.backbone.state_dict().items()}
        if self.plan is not None:
            tensors.update({f"ema.{k}": v for k, v in self.plan.ema.shadow.items()})
        return tensors

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
            return BACKBONES.build(self.config.backbone, dim=dim, n_conditions=self.n_conditions,
                                   **self._backbone_kwargs())
        backbone = BACKBONES.build(self.config.backbone, dim=dim, n_conditions=0, **self._backbone_kwargs())
        return install_condition_embedding(backbone, self.condition_space)

    # -------------------------------------------------------------- training
    def _budget_defaults(self) -> dict:
        """Default budget of each phase (``resolve_budgets``' ``defaults``)."""
        return {"flow_steps": 2000, "batch_size": 256, "flow_batch_size": 256}

    @seeded_training
    def train(self, max_epochs: int | None = None, batch_size: int | None = None, max_steps: int | None = None, *,
              vae_steps: int | None = None, flow_steps: int | None = None, flow_batch_size: int | None = None,
              representation_from: FlowModel | None = None, seed: int = 0, accelerator: str = "cpu",
              devices: int | str = 1, num_nodes: int = 1, strategy: str = "auto", progress_bar: bool = True,
              log_dir: str | None = None, checkpoint_dir: str | None = None, checkpoint_every: int | None = None,
              resume: bool = False):
        """Train the model's phases in order: the representation (``"vae"``, models with a count VAE), then the flow.

        Parameters
        ----------
        max_epochs, max_steps
            The budget of every phase not given its own (the smaller when both are given).
        batch_size
            Cells per step of the first phase (the VAE's, or the flow's in a model without one).
        vae_steps, flow_steps, flow_batch_size
            The VAE phase's steps, the flow phase's steps and its batch (cells; populations for
            ``PopulationFlow``, trajectories for ``TrajectoryFlow``). Defaults: each model's
            (``LatentFlow``: :func:`~exprflow.models.latent_flow.default_vae_steps`, 4,000 flow steps).
        representation_from
            A trained model with the same genes and representation config whose representation (VAE
            weights) is copied instead of trained: flows compared on one VAE.
        seed
            Initialises the networks of a model not trained yet (a trained one continues from its
            weights) and draws the batches, so it alone fixes the result on CPU; the caller's torch,
            NumPy and Python generators are left as they were (:mod:`exprflow.training.seeding`).
        accelerator, devices, num_nodes, strategy, progress_bar, log_dir, checkpoint_dir, checkpoint_every, resume
            :class:`~exprflow.training.options.TrainerOptions`: multi-device training (docs/scaling.md);
            each phase checkpoints to ``checkpoint_dir/{phase}.ckpt`` and ``resume=True`` continues the
            interrupted phase exactly, skipping finished ones.

        Returns
        -------
        FlowModel
            ``self``, trained (``history``: one loss table per phase).
        """
        name = type(self).__name__
        if self.data is None:
            raise ExprflowInputError(f"A loaded model cannot be trained again; build a new {name}(adata).")
        budgets = resolve_budgets(self.phases, max_epochs=max_epochs, max_steps=max_steps, batch_size=batch_size,
                                  flow_batch_size=flow_batch_size, vae_steps=vae_steps, flow_steps=flow_steps,
                                  defaults=self._budget_defaults(), model=name)
        trainer = TrainerOptions(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                                 seed=seed, progress_bar=progress_bar, log_dir=log_dir, checkpoint_dir=checkpoint_dir,
                                 checkpoint_every=checkpoint_every, resume=resume)
        self._check_flow_budget(budgets["flow"])
        start = time.perf_counter()
        self._train_representation(budgets.get("vae"), trainer, representation_from)
        self.vae_seconds = time.perf_counter() - start if "vae" in self.phases else None
        self._train_flow(budgets["flow"], trainer)
        self.train_seconds = time.perf_counter() - start
        self.history = training_history(**self._phase_histories())
        self.is_trained = True
        return self

    def _check_flow_budget(self, budget: PhaseBudget) -> None:  # checked before a VAE phase trains
        if budget.max_steps == 0 or budget.max_epochs == 0:
            raise ExprflowInputError(f"{type(self).__name__}: the flow phase needs at least one step; got "
                                     f"{budget.describe()} (flow_steps / max_steps / max_epochs).")

    def _train_representation(self, budget: PhaseBudget | None, trainer: TrainerOptions,
                              representation_from: FlowModel | None) -> None:
        if representation_from is not None:
            raise ExprflowInputError(f"{type(self).__name__} has no trained representation to copy: "
                                     "representation_from does not apply.")

    def _train_flow(self, budget: PhaseBudget, trainer: TrainerOptions) -> None:
        """The flow phase: :meth:`_flow_plan` on :meth:`_flow_data`."""
        from torch.utils.data import DataLoader

        from exprflow.training.fit import fit_loader, fit_plan

        logger.info("%s: rectified flow, %s", type(self).__name__, budget.describe())
        self.plan = self._flow_plan(budget)
        data = self._flow_data(budget, trainer)
        if isinstance(data, DataLoader):
            fit_loader(self.plan, data, max_epochs=budget.max_epochs, max_steps=budget.max_steps,
                       **trainer.fit_kwargs("flow"))
        else:
            fit_plan(self.plan, *data, batch_size=budget.batch_size, max_epochs=budget.max_epochs,
                     max_steps=budget.max_steps, **trainer.fit_kwargs("flow"))

    def _flow_data(self, budget: PhaseBudget, trainer: TrainerOptions):
        """``(rows, condition codes)`` the flow trains on (densified per batch), or a ready DataLoader."""
        raise NotImplementedError

    def _flow_plan(self, budget: PhaseBudget) -> FlowTrainingPlan:
        return FlowTrainingPlan(self.backbone, self.objective, lambda s: s, self.config.flow_optim, 0)

    def _phase_histories(self) -> dict:
        return {"flow": self.plan.history}

    # ------------------------------------------------------------ generation
    def _ema_weights(self):
        return nullcontext() if self.plan is None else self.plan.ema.swap(self.backbone)

    @torch.no_grad()
    def sample_states(self, codes: np.ndarray | None, n: int, *, n_steps: int, solver: str,
                      guidance: float | AttributeGuidance, generator: torch.Generator,
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
            if isinstance(guidance, AttributeGuidance):
                velocity = compositional_velocity(self.backbone, self.condition_space, cond, guidance.weights,
                                                  guidance.composition)
            else:
                velocity = guided_velocity(self.backbone, cond, guidance)
            result = integrate(velocity, x0, solver=solver, n_steps=n_steps)
        return result.x, result.nfe

    def generate(self, n_cells: int | None = None,
                 conditions: Mapping[str, int] | Sequence[str] | str | pd.DataFrame | None = None,
                 n_steps: int | None = None, solver: str | None = None, guidance: float | Mapping[str, float] = 1.0,
                 seed: int = 0, batch_size: int | None = None, composition: str = "joint",
                 name_prefix: str = "gen") -> AnnData:
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
        from exprflow.output.generation import generate_cells

        return generate_cells(self, n_cells, conditions, n_steps=n_steps, solver=solver, guidance=guidance, seed=seed,
                              batch_size=batch_size, composition=composition, name_prefix=name_prefix)

    @property
    def default_sampler(self) -> dict:
        """``{"solver", "n_steps"}`` that ``generate`` uses by default: :data:`DEFAULT_SAMPLER`, or one
        Euler step after :meth:`reflow`."""
        info = getattr(self, "reflow_info", None)
        return dict(info["sampler"]) if info else dict(DEFAULT_SAMPLER)

    def reflow(self, n_pairs: int = 20_000, steps: int = 2000, **kwargs):
        """Straighten the flow so one Euler step suffices: retrain it on (noise, generated) pairs (Liu et
        al. 2022); see :func:`exprflow.training.reflow.reflow` for ``n_steps``/``solver`` of the teacher,
        ``batch_size``, ``seed``, ``progress_bar`` and the training options. Returns ``self``."""
        from exprflow.training.reflow import reflow

        return reflow(self, n_pairs, steps, **kwargs)

    def generate_to_file(self, path: str, n_cells: int | None = None,
                         conditions: Mapping[str, int] | Sequence[str] | str | None = None, **kwargs):
        """Generate cells in chunks straight into an ``.h5ad`` file (bounded memory, resumable, atomic).

        See :func:`exprflow.output.streaming.generate_to_file` for ``chunk_size``, ``seed``, ``resume``,
        ``overwrite``, ``progress_bar`` and the contract; other keyword arguments go to :meth:`generate`.
        """
        from exprflow.output.streaming import generate_to_file

        if self.condition_space is not None:
            raise ExprflowInputError("generate_to_file takes models with one condition key; with several, "
                                     "call generate() and write the result (exprflow.io).")
        return generate_to_file(self, path, n_cells, conditions, **kwargs)

    # ----------------------------------------------------------- persistence
    def save(self, dir_path: str, overwrite: bool = False) -> None:
        """Save to a directory (``config.json`` + ``weights.pt``), atomically
        (:func:`exprflow.persistence.flow_model.save_flow_model`)."""
        from exprflow.persistence.flow_model import save_flow_model

        save_flow_model(self, dir_path, overwrite=overwrite)

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | None = None):
        """Load a saved model; with ``adata``, check that its genes (and set-up) match the model's."""
        from exprflow.persistence.flow_model import load_flow_model

        return load_flow_model(cls, dir_path, adata)
