"""``PopulationFlow``: a rectified flow whose sample is a whole population of cells (cells as tokens).

::

    phase 1  count VAE, exactly LatentFlow's (NB / ZINB / Poisson decoder, same defaults)
    phase 2  flow state of a cell  s = standardise([E q(z|x), log l])   (LatentFlow's state)
             a training sample is a POPULATION: N cells of one group (the condition key, e.g.
             condition ctrl/stim or sample_id), drawn by :mod:`exprflow.data.populations`
             x1 (N, d) = the states of those cells;  x0 ~ N(0, I) of shape (N, d)
             v_theta(x_t, t, group) (N, d): the ``cell_set`` backbone, attention over cells without
             positions (permutation-equivariant), adaLN modulation by flow time + group
    sample   integrate P populations (P, N, d) jointly -> un-standardise -> counts from the decoder

Generating N cells independently (LatentFlow) draws each cell from the group's marginal; generating
them jointly lets the model learn population-level variables, such as a composition that varies
between populations (``concentration``: Dirichlet-resampled cell-type proportions in training).

Example::

    model = PopulationFlow(adata, condition_key="sample_id", population_size=64)
    model.train(flow_steps=1000)
    pops = model.generate_populations(20, condition="ctrl101")     # 20 x 64 cells, obs["population"]
    cells = model.generate(conditions={"ctrl101": 100})            # the FlowModel contract
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import lightning as L
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from torch.utils.data import DataLoader

from exprflow import __version__
from exprflow.backbones import cell_set as _cell_set  # noqa: F401  (registers the "cell_set" backbone)
from exprflow.data import read_adata
from exprflow.data.populations import PopulationDataset, population_sampler
from exprflow.errors import ExprflowInputError
from exprflow.sampling.options import EULER_REFERENCE
from exprflow.flows import guided_velocity
from exprflow.output.generation import chunks_by_condition
from exprflow.models.conditions import require_single_key
from exprflow.training.history import training_history
from exprflow.training.options import TrainerOptions, resolve_budgets
from exprflow.models.latent_flow import DECODE_MODES, LatentFlow, LatentFlowConfig
from exprflow.output.anndata import generated_adata, resolve_conditions
from exprflow.training.seeding import seeded_training
from exprflow.sampling import integrate
from exprflow.threads import thread_limit

logger = logging.getLogger(__name__)

#: populations integrated together hold at most this many cells
GENERATE_CELLS_PER_CHUNK = 8192


@dataclass(frozen=True)
class PopulationFlowConfig(LatentFlowConfig):
    """LatentFlow's options plus the population: ``population_size`` cells of one group (the condition key);
    ``composition_key`` + ``concentration``: Dirichlet-resampled cell-type proportions in training
    populations (None: plain random subsets); ``replace``: bootstrap groups smaller than N;
    ``flow_steps`` / ``flow_batch_size`` (populations per step): ``train()``'s default flow budget, here so
    that ``exprflow fit --model-kwargs`` can set it."""

    backbone: str = "cell_set"
    population_size: int = 64
    composition_key: str | None = None
    concentration: float | None = None
    replace: bool = False
    flow_steps: int = 2000
    flow_batch_size: int = 8


def _population_steps(budget, n_cells: int, population_size: int) -> int:
    """The flow phase's steps (an epoch: as many cells, in populations, as there are training cells)."""
    if budget.max_steps is not None:
        return budget.max_steps
    return max(budget.max_epochs * n_cells // (budget.batch_size * population_size), 1)


class PopulationFlow(LatentFlow):
    """Count VAE + rectified flow over populations of N latent cells; see the module docstring."""

    config_cls = PopulationFlowConfig

    def __init__(self, adata: AnnData | str, layer: str | None = None, condition_key: str | None = None,
                 **config) -> None:
        require_single_key(condition_key, "PopulationFlow")
        adata = read_adata(adata)
        self._obs = adata.obs  # read only, for the population sampler (released after set-up)
        try:
            super().__init__(adata, layer=layer, condition_key=condition_key, **config)
        finally:
            del self._obs

    def _fit_representation(self) -> None:
        super()._fit_representation()
        c = self.config
        obs = self._obs.iloc[self.data.kept]  # rows of self.data.X (empty cells dropped)
        self.sampler = population_sampler(obs, self.setup.condition_key, c.population_size,
                                          composition_key=c.composition_key, concentration=c.concentration,
                                          replace=c.replace)

    # ---------------------------------------------------------------- training
    def _budget_defaults(self) -> dict:
        return {**super()._budget_defaults(), "flow_steps": self.config.flow_steps,
                "flow_batch_size": self.config.flow_batch_size}

    @seeded_training(initialise=False)
    def train_flow(self, flow_steps: int | None = None, flow_batch_size: int | None = None, *,
                   accelerator: str = "cpu", devices: int | str = 1, seed: int = 0, progress_bar: bool = True,
                   log_dir: str | None = None) -> PopulationFlow:
        """The flow phase alone: (re)train the population flow on the current VAE's latent means (e.g. after
        loading another model's VAE weights into ``self.vae``, to compare flows on one VAE). The networks
        are not initialised again; the caller's random generators are left as they were."""
        if self.data is None:
            raise ExprflowInputError("A loaded model cannot be trained again; build a new PopulationFlow(adata).")
        budget = resolve_budgets(("flow",), max_epochs=None, max_steps=None, batch_size=None,
                                 flow_batch_size=flow_batch_size, vae_steps=None, flow_steps=flow_steps,
                                 defaults=self._budget_defaults(), model="PopulationFlow")["flow"]
        trainer = TrainerOptions(accelerator=accelerator, devices=devices, seed=seed, progress_bar=progress_bar,
                                 log_dir=log_dir)
        start = time.perf_counter()
        self._train_states = self.representation.fit(self.data.X, library=self.data.library_size)
        self._train_flow(budget, trainer)
        self.train_seconds = time.perf_counter() - start
        self.history = training_history(**self._phase_histories())
        self.is_trained = True
        return self

    def _flow_data(self, budget, trainer) -> DataLoader:
        steps = _population_steps(budget, self.data.n_cells, self.config.population_size)
        dataset = PopulationDataset(self._train_states, self.sampler, steps * budget.batch_size, seed=trainer.seed,
                                    conditional=self.levels is not None)
        L.seed_everything(trainer.seed, workers=True, verbose=False)
        return DataLoader(dataset, batch_size=budget.batch_size, shuffle=False, drop_last=True)

    # ------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample_populations(self, n_populations: int, code: int | None, population_size: int, *, n_steps: int,
                           solver: str, guidance: float, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """Integrate the flow for ``n_populations`` populations of one condition code (None: unconditional);
        returns standardised states ``(P, N, d)`` and the number of function evaluations."""
        x0 = torch.randn(n_populations, population_size, self.backbone.dim, generator=generator)
        cond = None if code is None else torch.full((n_populations,), int(code), dtype=torch.long)
        self.backbone.eval()
        with self._ema_weights(), thread_limit(self.backbone.dim):
            result = integrate(guided_velocity(self.backbone, cond, guidance), x0, solver=solver, n_steps=n_steps)
        return result.x, result.nfe

    def sample_states(self, codes: np.ndarray | None, n: int, *, n_steps: int, solver: str, guidance: float,
                      generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """``n`` cells of one condition as ``ceil(n / N)`` populations integrated jointly (the last one cut);
        the cells of population ``p`` are rows ``p N ... (p + 1) N - 1``."""
        size = getattr(self, "_sampling_population_size", self.config.population_size)
        code = None
        if codes is not None:
            if len(np.unique(codes)) > 1:
                raise ValueError("sample_states: a chunk of cells must share one condition code")
            code = int(codes[0])
        x, nfe = self.sample_populations(math.ceil(n / size), code, size, n_steps=n_steps, solver=solver,
                                         guidance=guidance, generator=generator)
        return x.reshape(-1, x.shape[-1])[:n], nfe

    def generate_populations(
        self,
        n_populations: int,
        condition: str | list[str] | dict[str, int] | None = None,
        population_size: int | None = None,
        n_steps: int = EULER_REFERENCE.n_steps,
        solver: str = EULER_REFERENCE.solver,
        guidance: float = 1.0,
        seed: int = 0,
        decode: str | None = None,
        name_prefix: str = "gen",
    ) -> AnnData:
        """``n_populations`` populations of ``population_size`` cells (default: the training N) as one AnnData.

        ``condition``: one level for every population, a list (one level per population), a mapping
        level -> number of populations, or None (levels drawn by training frequency). Cells of a
        population are consecutive rows; ``obs["population"]`` holds its id (``pop_0``, ...) and the
        condition key its level. Counts come from the VAE decoder (``decode="mean"``: decoder means).
        Cells are named as by :meth:`FlowModel.generate` (``name_prefix``).
        """
        if not self.is_trained:
            raise ExprflowInputError("The model is not trained yet: call train() (or load a trained model) first.")
        size = self.config.population_size if population_size is None else int(population_size)
        if size < 1:
            raise ExprflowInputError(f"population_size must be a positive integer, got {population_size}.")
        if size != self.config.population_size:
            logger.info("generating populations of %d cells with a model trained on %d", size,
                        self.config.population_size)
        mode = decode or self.config.decode
        if mode not in DECODE_MODES:
            raise ExprflowInputError(f"decode must be one of {DECODE_MODES}, got {mode!r}.")
        rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
        n_pop, pop_codes = resolve_conditions(n_populations, condition, self.levels, self.train_codes, rng)
        order = np.arange(n_pop) if pop_codes is None else np.argsort(pop_codes, kind="stable")
        per_chunk = max(GENERATE_CELLS_PER_CHUNK // size, 1)
        self._decode_mode, self._sampling_population_size = mode, size
        chunks, start = [], time.perf_counter()
        try:
            for idx in chunks_by_condition(order, pop_codes, per_chunk):
                cell_codes = None if pop_codes is None else np.repeat(pop_codes[idx], size)
                chunks.append(self._generate_chunk(cell_codes, len(idx) * size, n_steps=n_steps, solver=solver,
                                                   guidance=guidance, generator=gen, rng=rng))
        finally:
            del self._sampling_population_size
        seconds = time.perf_counter() - start
        # populations back in request order: population order[j] was generated j-th
        rows = (np.argsort(order, kind="stable")[:, None] * size + np.arange(size)).ravel()
        counts = sp.vstack(chunks).tocsr()[rows]
        provenance = {
            "model": type(self).__name__, "version": __version__, "n_steps": n_steps, "solver": solver,
            "nfe": self._last_nfe, "guidance": guidance, "seed": seed, "sampling_seconds": seconds,
            "n_populations": n_pop, "population_size": size, "config": asdict(self.config),
        }
        adata = generated_adata(counts, self.var_names, condition_key=self.setup.condition_key, levels=self.levels,
                                codes=None if pop_codes is None else np.repeat(pop_codes, size),
                                provenance=provenance, name_prefix=name_prefix)
        adata.obs["population"] = pd.Categorical(np.repeat([f"pop_{p}" for p in range(n_pop)], size),
                                                 categories=[f"pop_{p}" for p in range(n_pop)])
        return adata
