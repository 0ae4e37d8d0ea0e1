"""``TrajectoryFlow``: time courses as sequences (seed Option D: ``[z(t1), ..., z(tn)] -> SSM``).

::

    cells (snapshots) -> latent states s (count VAE for counts, log1p + PCA/Gaussian for FPKM)
    per time level k: the train cells' states  S_k
    OT chaining of consecutive levels -> trajectories [s(t_1), ..., s(t_T)]   (flows/trajectories.py)
    sequence rectified flow on (B, T, d), a mixer over the time axis        (flows/sequence_objective.py)
        s4d | hyena | mamba | transformer | hybrid                          (backbones/time_sequence.py)
    predict(time)          observed levels as context (real chained cells), the level at ``time`` generated
    generate_trajectories  whole trajectories generated (or with observed levels as context)

The time grid is the observed levels plus any ``time_points`` without cells (a held-out time point):
those grid steps are never supervised, and ``predict(time=held_out)`` fills them in from the context
of the others. Example::

    TrajectoryFlow.setup_anndata(adata, time_key="Hours")
    model = TrajectoryFlow(adata_without_24h, time_points=[0, 24, 48, 72])
    model.train(max_steps=1000)
    cells_24h = model.predict(time=24, n_cells=300)
    traj = model.generate_trajectories(100)     # obs: trajectory, Hours, source
"""

from __future__ import annotations

import inspect
import logging
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from anndata import AnnData
from torch.utils.data import DataLoader, TensorDataset

from exprflow import __version__
from exprflow.backbones.time_sequence import TimeSequenceBackbone
from exprflow.data import read_adata
from exprflow.data.timecourse import TimeCourse, prepare_timecourse
from exprflow.errors import ExprflowInputError
from exprflow.flows.sequence_objective import SequenceRectifiedFlow, sample_trajectories
from exprflow.flows.trajectories import chain_sequences
from exprflow.models.base import config_from_dict
from exprflow.models.fit import fit_loader
from exprflow.models.latent_flow import default_vae_steps
from exprflow.models.persistence import save_model_dir
from exprflow.models.restore import load_backbone_weights
from exprflow.models.setup import recall_setup, remember_setup
from exprflow.models.trajectory_encoders import ENCODERS
from exprflow.models.trajectory_output import TimeCourseSetup, trajectory_adata
from exprflow.models.training import FlowTrainingPlan, OptimConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrajectoryFlowConfig:
    """Everything that defines a TrajectoryFlow (saved as ``config.json``)."""

    representation: str = "auto"  # "auto" (count_vae for counts, gaussian otherwise) | "count_vae" | "gaussian"
    n_latent: int = 10
    likelihood: str = "nb"  # count_vae only
    backbone: str = "s4d"  # s4d | hyena | mamba | transformer | hybrid (mixer over the time axis)
    backbone_kwargs: dict | None = None  # width, depth, mlp_ratio, time_dim, dropout, causal, mixer_kwargs
    time_points: list | None = None  # the time grid; None = the observed time levels
    weight_key: str | None = None
    min_weight: float = 0.5
    n_bins: int | None = None
    n_sequences: int = 4096
    chain: str = "auto"  # OT chaining: auto | exact | minibatch
    chain_batch_size: int = 256
    time_sampler: str = "uniform"
    p_uncond: float = 0.2
    decode: str = "sample"  # "sample" | "mean"
    optim: OptimConfig = OptimConfig(lr=1e-3, warmup_steps=50)


class TrajectoryFlow:
    """Sequence rectified flow over the time axis of a time course (see the module docstring)."""

    config_cls = TrajectoryFlowConfig

    def __init__(self, adata: AnnData | str, time_key: str | None = None, layer: str | None = None,
                 condition_key: str | None = None, weight_key: str | None = None, **config) -> None:
        if condition_key is not None:
            raise ExprflowInputError(
                "TrajectoryFlow does not condition on an obs label yet; subset the data to one condition (or "
                "lineage, with weight_key=) and leave condition_key unset."
            )
        adata = read_adata(adata)
        known = {f.name for f in fields(TrajectoryFlowConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ExprflowInputError(f"Unknown TrajectoryFlow option(s) {unknown}; valid: {sorted(known)}.")
        saved = recall_setup(adata)
        saved = saved if isinstance(saved, TimeCourseSetup) else TimeCourseSetup()
        weight_key = weight_key or config.pop("weight_key", None) or saved.weight_key
        self.setup = TimeCourseSetup(layer=layer or saved.layer, time_key=time_key or saved.time_key,
                                     weight_key=weight_key)
        if self.setup.time_key is None:
            raise ExprflowInputError("Give time_key= (the obs column with each cell's time), or call "
                                     "TrajectoryFlow.setup_anndata(adata, time_key=...) first.")
        optim = config.pop("optim", None)
        self.config = TrajectoryFlowConfig(weight_key=self.setup.weight_key, **config,
                                           **({} if optim is None else {"optim": _optim(optim)}))
        c = self.config
        course = prepare_timecourse(adata, self.setup.time_key, layer=self.setup.layer, weight_key=c.weight_key,
                                    min_weight=c.min_weight, n_bins=c.n_bins)
        self.course: TimeCourse | None = course
        self.var_names = list(course.data.var_names)
        self._set_grid(course)
        name = c.representation
        if name == "auto":
            name = "count_vae" if course.data.is_counts else "gaussian"
        if name == "count_vae" and not course.data.is_counts:
            raise ExprflowInputError("representation='count_vae' needs raw integer counts; this data is not "
                                     "counts (use representation='gaussian' for FPKM / log data).")
        self.representation = name
        if name == "gaussian" and c.n_latent >= min(course.data.n_cells, course.data.n_genes):
            raise ExprflowInputError(f"n_latent={c.n_latent} needs more cells and genes than "
                                     f"{course.data.n_cells} x {course.data.n_genes}; lower n_latent.")
        self.encoder = ENCODERS.get(name)(len(self.var_names), c.n_latent, likelihood=c.likelihood)
        self._build_backbone()
        self.plan = None
        self.history: list | dict = []
        self.train_seconds: float | None = None
        self.is_trained = False

    # ------------------------------------------------------------------ set-up
    @classmethod
    def setup_anndata(cls, adata: AnnData, time_key: str, layer: str | None = None,
                      weight_key: str | None = None) -> None:
        """Validate and remember the time column (and layer / lineage weights); ``adata`` is not modified."""
        prepare_timecourse(adata, time_key, layer=layer, weight_key=weight_key)
        remember_setup(adata, TimeCourseSetup(layer=layer, time_key=time_key, weight_key=weight_key))

    def _set_grid(self, course: TimeCourse) -> None:
        """The time grid: observed levels plus ``time_points`` without cells (never supervised)."""
        observed = list(course.time_levels)
        extra = [float(t) for t in (self.config.time_points or [])]
        if self.config.n_bins is not None and extra:
            raise ExprflowInputError("time_points cannot be combined with n_bins; hold a bin out by dropping it.")
        grid = np.unique(np.round(np.array(observed + extra, dtype=np.float64), 9))
        labels = {round(float(v), 9): name for v, name in zip(course.time_levels, course.time_labels)}
        self.time_grid = grid
        self.time_labels = [labels.get(round(float(v), 9), f"{v:g}") for v in grid]
        self.present = np.array([round(float(v), 9) in labels for v in grid])
        span = grid[-1] - grid[0]
        self.positions = ((grid - grid[0]) / span).astype(np.float32)
        self.level_of_grid = {i: course.time_labels.index(self.time_labels[i]) for i in np.flatnonzero(self.present)}

    def _build_backbone(self) -> None:
        kwargs = dict(self.config.backbone_kwargs or {})
        valid = sorted(set(inspect.signature(TimeSequenceBackbone).parameters) - {"dim", "backbone", "n_conditions"})
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ExprflowInputError(f"backbone_kwargs: the time-axis backbone has no option(s) {unknown}; "
                                     f"valid: {valid}.")
        self.backbone = TimeSequenceBackbone(self.encoder.dim, backbone=self.config.backbone, **kwargs)
        self.objective = SequenceRectifiedFlow(torch.from_numpy(self.positions), torch.from_numpy(self.present),
                                               self.config.time_sampler, self.config.p_uncond)

    # ---------------------------------------------------------------- training
    def train(self, max_epochs: int | None = None, max_steps: int | None = None, batch_size: int = 128,
              vae_steps: int | None = None, seed: int = 0, accelerator: str = "cpu", devices: int | str = 1,
              progress_bar: bool = True, log_dir: str | None = None,
              representation_from: TrajectoryFlow | None = None) -> TrajectoryFlow:
        """Fit the latent space (VAE phase for counts), chain OT trajectories, train the sequence flow.

        ``max_steps`` / ``max_epochs``: the flow's budget (default 2,000 steps; an epoch is one pass
        over the ``n_sequences`` chained trajectories). ``vae_steps``: the count VAE's (default
        :func:`~exprflow.models.latent_flow.default_vae_steps`). ``representation_from``: a trained
        TrajectoryFlow on the same cells whose fitted latent space is reused (compare backbones on one
        latent space; its VAE is not trained again).
        """
        if self.course is None:
            raise ExprflowInputError("A loaded model cannot be trained again; build a new TrajectoryFlow(adata).")
        if max_epochs is None and max_steps is None:
            max_steps = 2000
        common = dict(accelerator=accelerator, devices=devices, progress_bar=progress_bar, log_dir=log_dir)
        start = time.perf_counter()
        X = self.course.data.X
        if representation_from is not None:
            if representation_from.var_names != self.var_names or not representation_from.is_trained:
                raise ExprflowInputError("representation_from must be a trained TrajectoryFlow on the same genes.")
            self.encoder = representation_from.encoder
        elif self.encoder.is_counts:
            vae_steps = vae_steps or default_vae_steps(X.shape[0], X.shape[1], batch_size)
            self.encoder.fit(X, seed=seed, steps=vae_steps, batch_size=batch_size, **common)
        else:
            self.encoder.fit(X, seed=seed)
        states = self.encoder.encode(X)
        self.train_states, self.train_codes = states, np.asarray(self.course.time_codes)
        self.train_weights = self.course.weights
        sequences = self.chain(self.config.n_sequences, seed=seed)  # (N, T, d)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        loader = DataLoader(_Trajectories(torch.from_numpy(sequences)), batch_size=min(batch_size, len(sequences)),
                            shuffle=True, drop_last=True, generator=gen)
        self.plan = FlowTrainingPlan(self.backbone, self.objective, lambda s: s, self.config.optim, 0)
        fit_loader(self.plan, loader, max_epochs=max_epochs, max_steps=max_steps, seed=seed, **common)
        self.train_seconds = time.perf_counter() - start
        flow = list(self.plan.history)
        vae = getattr(getattr(self.encoder, "plan", None), "history", None)
        self.history = {"vae": list(vae), "flow": flow} if vae is not None else flow
        self.is_trained = True
        return self

    def chain(self, n: int, *, seed: int = 0, skip: int | None = None) -> np.ndarray:
        """``n`` OT-chained trajectories of train states on the grid ``(n, T, d)`` (zeros where no data).

        ``skip``: a grid index left out of the chain (its column stays zero).
        """
        grid_steps = [i for i in np.flatnonzero(self.present) if i != skip]
        groups, weights = [], []
        for i in grid_steps:
            rows = np.flatnonzero(self.train_codes == self.level_of_grid[i])
            groups.append(self.train_states[rows])
            weights.append(None if self.train_weights is None else self.train_weights[rows])
        idx = chain_sequences(groups, n, method=self.config.chain, seed=seed, weights=weights,
                              batch_size=self.config.chain_batch_size)
        out = np.zeros((n, len(self.time_grid), self.encoder.dim), dtype=np.float32)
        for col, (i, g) in enumerate(zip(grid_steps, groups)):
            out[:, i] = g[idx[:, col]]
        return out

    # -------------------------------------------------------------- sampling
    def grid_index(self, time_point: float | str) -> int:
        """Grid index of a time (a value or a level label); clear error for a time off the grid."""
        if isinstance(time_point, str) and time_point in self.time_labels:
            return self.time_labels.index(time_point)
        try:
            value = float(time_point)
        except (TypeError, ValueError):
            value = None
        hits = [] if value is None else np.flatnonzero(np.isclose(self.time_grid, value, rtol=1e-9, atol=1e-9))
        if len(hits) != 1:
            raise ExprflowInputError(
                f"time {time_point!r} is not on the model's time grid {self.time_labels}; a time point without "
                "cells must be declared at training (time_points=[...])."
            )
        return int(hits[0])

    def sample_states(self, n: int, *, context: str = "none", query: int | None = None, n_steps: int = 16,
                      solver: str = "euler", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Trajectories of latent states ``(n, T, d)`` and the observed mask ``(n, T)``.

        ``context="observed"``: every present grid step except ``query`` is observed (real train states
        chained by OT); ``"none"``: the whole trajectory is generated.
        """
        if not self.is_trained:
            raise ExprflowInputError("The model is not trained yet: call train() (or load a trained model) first.")
        if context not in ("none", "observed"):
            raise ExprflowInputError(f"context must be 'none' or 'observed', got {context!r}.")
        gen = torch.Generator().manual_seed(seed)
        x0 = torch.randn(n, len(self.time_grid), self.encoder.dim, generator=gen)
        observed = torch.zeros(n, len(self.time_grid), dtype=torch.bool)
        values = torch.zeros_like(x0)
        if context == "observed":
            values = torch.from_numpy(self.chain(n, seed=seed, skip=query))
            observed[:] = torch.from_numpy(self.present)
            if query is not None:
                observed[:, query] = False
        self.backbone.eval()
        with self.plan.ema.swap(self.backbone) if self.plan is not None else nullcontext():
            states, self._last_nfe = sample_trajectories(self.backbone, x0, torch.from_numpy(self.positions), values,
                                                         observed, n_steps=n_steps, solver=solver)
        return states.numpy(), observed.numpy()

    def predict(self, time: float | str, n_cells: int = 500, *, context: str = "observed", n_steps: int = 16,
                solver: str = "euler", seed: int = 0, decode: str | None = None) -> AnnData:
        """Cells at one time point (observed or held out) as an AnnData (values, ``obs[time_key]``, source).

        With ``context="observed"`` the other observed time points are given as context (real train
        cells chained by OT) and the time point is filled in; ``"none"`` generates whole trajectories.
        """
        k = self.grid_index(time)
        states, _ = self.sample_states(n_cells, context=context, query=k, n_steps=n_steps, solver=solver, seed=seed)
        rng = np.random.default_rng(seed)
        X = self.encoder.decode(states[:, k], rng, sample=(decode or self.config.decode) == "sample")
        return trajectory_adata(X, self, np.full(n_cells, k), trajectory=None,
                                provenance=self._provenance("predict", seed, n_steps, solver, context))

    def generate_trajectories(self, n: int, *, context: str = "none", n_steps: int = 16, solver: str = "euler",
                              seed: int = 0, decode: str | None = None) -> AnnData:
        """``n`` trajectories, one cell per grid time, as an AnnData of ``n * T`` cells.

        ``obs``: ``trajectory`` (id), the time key (time of the step), ``observed`` (context step) and
        ``source``; row ``i * T + k`` is step ``k`` of trajectory ``i``.
        """
        states, observed = self.sample_states(n, context=context, n_steps=n_steps, solver=solver, seed=seed)
        T = len(self.time_grid)
        rng = np.random.default_rng(seed)
        X = self.encoder.decode(states.reshape(n * T, -1), rng, sample=(decode or self.config.decode) == "sample")
        adata = trajectory_adata(X, self, np.tile(np.arange(T), n), trajectory=np.repeat(np.arange(n), T),
                                 provenance=self._provenance("generate_trajectories", seed, n_steps, solver, context))
        adata.obs["observed"] = observed.reshape(-1)
        return adata

    def generate(self, n_cells: int | None = None, conditions=None, n_steps: int = 16, solver: str = "euler",
                 guidance: float = 1.0, seed: int = 0) -> AnnData:
        """``n_cells`` cells of whole generated trajectories (the steps of ``ceil(n_cells / T)`` trajectories,
        times in ``obs``): the contract of ``exprflow generate``. No conditions, no guidance."""
        if conditions is not None or guidance != 1.0:
            raise ExprflowInputError("TrajectoryFlow has no condition key: generate(n_cells=...) only, no guidance.")
        if n_cells is None or int(n_cells) < 1:
            raise ExprflowInputError("Give n_cells >= 1.")
        n_traj = -(-int(n_cells) // len(self.time_grid))
        return self.generate_trajectories(n_traj, n_steps=n_steps, solver=solver, seed=seed)[: int(n_cells)].copy()

    def _provenance(self, what: str, seed: int, n_steps: int, solver: str, context: str) -> dict:
        return {"model": type(self).__name__, "version": __version__, "call": what, "seed": seed, "n_steps": n_steps,
                "solver": solver, "nfe": self._last_nfe, "context": context, "config": asdict(self.config)}

    # ----------------------------------------------------------- persistence
    def save(self, dir_path: str, overwrite: bool = False) -> None:
        """Save to a directory (``config.json`` + ``weights.pt`` of plain tensors), atomically.

        The train cells' latent states (and time codes) are saved too: they are the context of
        :meth:`predict` after loading.
        """
        if not self.is_trained:
            raise ExprflowInputError("Nothing to save: the model is not trained.")
        enc_fields, enc_tensors = self.encoder.state()
        config = {
            "model": type(self).__name__, "exprflow_version": __version__, "torch_version": torch.__version__,
            "config": asdict(self.config), "setup": asdict(self.setup), "var_names": self.var_names,
            "representation": self.representation, "encoder": enc_fields, "time_grid": self.time_grid.tolist(),
            "time_labels": self.time_labels, "present": self.present.tolist(),
            "level_of_grid": {str(k): v for k, v in self.level_of_grid.items()},
            "train_seconds": self.train_seconds, "history": self.history,
        }
        tensors = {f"encoder.{k}": v for k, v in enc_tensors.items()}
        tensors.update({f"backbone.{k}": v for k, v in self.backbone.state_dict().items()})
        if self.plan is not None:
            tensors.update({f"ema.{k}": v for k, v in self.plan.ema.shadow.items()})
        tensors.update({"context.states": torch.from_numpy(self.train_states),
                        "context.codes": torch.from_numpy(self.train_codes)})
        if self.train_weights is not None:
            tensors["context.weights"] = torch.from_numpy(np.asarray(self.train_weights))
        save_model_dir(dir_path, config, tensors, overwrite=overwrite)

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | None = None) -> TrajectoryFlow:
        """Load a saved model; with ``adata``, check that its genes match the model's."""
        from exprflow.models.restore import read_saved

        saved, tensors = read_saved(cls, dir_path, adata)
        self = cls.__new__(cls)
        self.config = config_from_dict(cls.config_cls, saved["config"])
        self.setup = TimeCourseSetup(**saved["setup"])
        self.var_names, self.representation = list(saved["var_names"]), saved["representation"]
        self.time_grid = np.asarray(saved["time_grid"], dtype=np.float64)
        self.time_labels, self.present = list(saved["time_labels"]), np.asarray(saved["present"], dtype=bool)
        self.positions = ((self.time_grid - self.time_grid[0]) / (self.time_grid[-1] - self.time_grid[0])).astype(np.float32)
        self.level_of_grid = {int(k): int(v) for k, v in saved["level_of_grid"].items()}
        self.course, self.plan, self.is_trained = None, None, True
        self.history, self.train_seconds = saved.get("history", []), saved.get("train_seconds")
        self.encoder = ENCODERS.get(self.representation)(len(self.var_names), self.config.n_latent,
                                                         likelihood=self.config.likelihood)
        self.encoder.load(saved["encoder"], {k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")})
        self._build_backbone()
        load_backbone_weights(self.backbone, {k: v for k, v in tensors.items()
                                              if k.startswith(("backbone.", "ema."))}, "backbone")
        self.train_states = tensors["context.states"].numpy()
        self.train_codes = tensors["context.codes"].numpy()
        self.train_weights = tensors["context.weights"].numpy() if "context.weights" in tensors else None
        return self


class _Trajectories(TensorDataset):
    """Chained trajectories ``(N, T, d)`` as ``{"x": (T, d)}`` items (the training plan's batch format)."""

    def __getitem__(self, i):
        return {"x": self.tensors[0][i]}


def _optim(value) -> OptimConfig:
    return value if isinstance(value, OptimConfig) else OptimConfig(**value)
