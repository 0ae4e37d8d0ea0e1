"""``PerturbationFlow``: perturbation response as a two-step sequence in a count VAE's latent space.

::

    phase 1  count VAE on all training cells (control and perturbed): s = standardise([E q(z|x), log l])
    pairs    every perturbed cell is paired with a control cell of its cell type (when cell_type_key is
             set) by minibatch exact OT in s (POT, flows.couplings.ot_assignment, within each group)
    phase 2  rectified flow from the control state to the perturbed state:
             x0 = s_ctrl, x1 = s_pert, xt = (1 - t) x0 + t x1, v_theta(xt, t, c, x0) ~ x1 - x0
             c = the perturbation (dropped to the null code with prob. cond_dropout: CFG);
             the network reads the 2-step sequence [s_ctrl, xt] (perturbation_net: MLP, S4D, Mamba,
             attention, or the Markov flow v(xt) without the source step)
    predict  encode control cells -> integrate the flow from their states -> decode (z, l) -> counts
             (decode="residual": the control cell's own log1p-normalised expression plus the predicted
             shift, log1p-normalised decoder mean at the moved state minus that at the cell's own state,
             back to counts with the cell's library size)

Example::

    model = PerturbationFlow(adata, condition_key="condition", control_group="ctrl", cell_type_key="cell_type")
    model.train()
    stim = model.predict(adata[adata.obs.condition == "ctrl"], condition="stim")   # AnnData of counts
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData
from torch.utils.data import DataLoader, Dataset

from exprflow.deprecation import renamed
from exprflow.data.perturbation import PairGroups, pair_groups, perturbation_from_counts
from exprflow.errors import ExprflowInputError
from exprflow.sampling.options import EULER_REFERENCE
from exprflow.flows import drop_conditions, guided_velocity
from exprflow.flows.couplings import OTCoupling
from exprflow.models.conditions import require_single_key
from exprflow.models.latent_flow import LatentFlow
from exprflow.models.perturbation_net import SourceBound, build_pair_network
from exprflow.training.plans import FlowTrainingPlan, OptimConfig
from exprflow.representations.count_latent import CountLatent
from exprflow.representations.vae import VAEConfig
from exprflow.sampling import integrate
from exprflow.threads import thread_limit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PerturbationFlowConfig:
    """Everything that defines a PerturbationFlow (saved as ``config.json``)."""

    control_group: str | None = None
    cell_type_key: str | None = None  # pair control and perturbed cells within cell type
    vae: VAEConfig = VAEConfig()
    vae_optim: OptimConfig = OptimConfig(lr=1e-3, weight_decay=1e-6, warmup_steps=0, min_lr_ratio=0.1, grad_clip=0.0)
    backbone: str = "mlp"  # mlp | s4d | mamba | hyena | transformer (over the 2-step axis)
    backbone_kwargs: dict | None = None
    source_token: bool = True  # False: the Markov flow v(xt, t, c) (baseline; mlp only)
    time_sampler: str = "uniform"
    cond_dropout: float = 0.1
    flow_optim: OptimConfig = OptimConfig()
    library: str = "flow"  # the flow state carries log library size (LatentFlow's state); the only choice
    decode: str = "sample"
    flow_steps: int = 2000  # train()'s default flow budget (so the CLI can set it via --model-kwargs)
    flow_batch_size: int = 256


def _pair_steps(budget, n_cells: int) -> int:
    """The flow phase's steps (an epoch: as many pairs as training cells)."""
    if budget.max_steps is not None:
        return budget.max_steps
    return max(budget.max_epochs * n_cells // budget.batch_size, 1)


class PairBatches(Dataset):
    """Item ``i`` is one batch of OT-paired ``(x0 = control state, x1 = perturbed state, cond)``.

    Perturbed cells are drawn uniformly; each is given a random control cell of its group, then the
    control cells are re-assigned within each group by exact OT (``OTCoupling``). Item ``i`` depends
    only on ``(seed, i)``, so a run is reproducible.
    """

    def __init__(self, states: np.ndarray, groups: PairGroups, batch_size: int, n_batches: int, seed: int) -> None:
        self.states = torch.as_tensor(states)
        self.groups, self.batch_size, self.n_batches, self.seed = groups, batch_size, n_batches, seed
        self.perturbed = np.flatnonzero(groups.group >= 0)
        self.coupling = OTCoupling()

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, i])
        rows1 = rng.choice(self.perturbed, size=min(self.batch_size, self.perturbed.size), replace=False)
        group = self.groups.group[rows1]
        rows0 = np.array([rng.choice(self.groups.controls[g]) for g in group])
        x1, x0 = self.states[rows1], self.states[rows0]
        x0 = self.coupling.pair(x0, x1, torch.as_tensor(group))
        return {"x0": x0, "x1": x1, "cond": torch.as_tensor(self.groups.perturbation[group])}


class PairFlowTrainingPlan(FlowTrainingPlan):
    """:class:`FlowTrainingPlan` for a bridge ``x0 -> x1`` with the source fed to the network."""

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0, x1, cond = batch["x0"], batch["x1"], batch["cond"]
        t = self.objective.time_sampler.sample(x1.shape[0]).to(x1.dtype)
        xt, ut = self.objective.path.sample(x0, x1, t)
        cond = drop_conditions(cond, self.backbone.n_conditions, self.objective.cond_dropout)
        loss = torch.mean((self.backbone(xt, t, cond, x0) - ut) ** 2)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {self.global_step}")
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x1.shape[0])
        self.history.append((int(self.global_step), float(loss.detach())))
        return loss


class PerturbationFlow(LatentFlow):
    """Predicts perturbed cells from control cells; see the module docstring.

    Args (besides :class:`PerturbationFlowConfig` fields as keywords):
        adata: counts of control AND perturbed cells (never modified).
        layer: layer holding raw counts (None: ``X``).
        condition_key: obs column of the perturbation (e.g. ``"condition"``).
        control_group: its control level (e.g. ``"ctrl"``).
    """

    config_cls = PerturbationFlowConfig
    decode_modes = ("sample", "mean", "residual")

    def __init__(self, adata: AnnData | str, layer: str | None = None, condition_key: str | None = None,
                 control_group: str | None = None, **config) -> None:
        from exprflow.data import read_adata

        require_single_key(condition_key, "PerturbationFlow")
        adata = read_adata(adata)
        self._adata_for_setup = adata  # read once; _fit_representation needs its obs (cell types)
        super().__init__(adata, layer=layer, condition_key=condition_key, control_group=control_group, **config)
        del self._adata_for_setup

    @property
    def n_conditions(self) -> int:
        """Number of perturbations (the control level is the flow's source, not a condition)."""
        return len(self.perturbations)

    @property
    def perturbations(self) -> list[str]:
        return [lv for lv in (self.levels or []) if lv != self.config.control_group]

    def _fit_representation(self) -> None:
        if self.config.library != "flow":
            raise ExprflowInputError("PerturbationFlow carries the library size in its flow state: library='flow' only.")
        self.pdata = perturbation_from_counts(self.data, self._adata_for_setup, self.config.control_group,
                                              self.config.cell_type_key)
        super()._fit_representation()

    def _build_networks(self, n_conditions: int) -> None:
        self.representation = CountLatent(len(self.var_names), self.config.vae)
        self.backbone = build_pair_network(self.config.backbone, self.state_dim, n_conditions,
                                           self.config.source_token, self.config.backbone_kwargs)
        self.objective = self._objective()

    def _objective(self):
        from exprflow.flows import RectifiedFlow

        c = self.config
        return RectifiedFlow(time_sampler=c.time_sampler, coupling="independent", cond_dropout=c.cond_dropout)

    # ---------------------------------------------------------------- training
    def _budget_defaults(self) -> dict:
        return {**super()._budget_defaults(), "flow_steps": self.config.flow_steps,
                "flow_batch_size": self.config.flow_batch_size}

    def train(self, *args, pretrained_vae: PerturbationFlow | None = None, **kwargs) -> PerturbationFlow:
        """:meth:`FlowModel.train <exprflow.models.base.FlowModel.train>`: the count VAE, then the flow on
        OT pairs of control and perturbed cells (``flow_steps``, default ``config.flow_steps``).
        ``pretrained_vae``: the old name of ``representation_from``."""
        kwargs["representation_from"] = renamed("representation_from", kwargs.get("representation_from"),
                                                "pretrained_vae", pretrained_vae)
        return super().train(*args, **kwargs)

    def _flow_data(self, budget, trainer) -> DataLoader:
        steps = _pair_steps(budget, self.data.n_cells)
        L.seed_everything(trainer.seed, workers=True, verbose=False)
        return DataLoader(PairBatches(self._train_states, pair_groups(self.pdata), budget.batch_size, steps,
                                      trainer.seed), batch_size=None, shuffle=False)

    def _flow_plan(self, budget) -> PairFlowTrainingPlan:
        steps = _pair_steps(budget, self.data.n_cells)
        return PairFlowTrainingPlan(self.backbone, self.objective, lambda s: s, self.config.flow_optim, steps)

    # -------------------------------------------------------------- states
    def encode_states(self, adata: AnnData, layer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Standardised flow states ``[E q(z|x), log l]`` of every cell of ``adata`` and their library sizes
        (``layer``: as in :meth:`get_latent_representation`)."""
        X = self.read_counts(adata, layer)
        library = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
        if np.any(library <= 0):
            raise ExprflowInputError(f"{int(np.sum(library <= 0))} cells have no counts; remove them first.")
        return self.representation.encode(X, library=library), library

    def training_states(self) -> np.ndarray:
        """Standardised states of the training cells (rows of ``self.data``; not available after load)."""
        if self.data is None:
            raise ExprflowInputError("A loaded model does not keep its training cells.")
        return self.representation.encode(self.data.X, library=self.data.library_size)

    def decode_states(self, states: np.ndarray, sample: bool = True, seed: int = 0) -> np.ndarray:
        """Counts (or decoder means) for standardised states; the library coordinate is clipped to training's range."""
        z, library = self.representation.split(states)
        return self.decode(z, library, sample=sample, seed=seed)

    @torch.no_grad()
    def transport(self, states: np.ndarray, condition: str, n_steps: int = EULER_REFERENCE.n_steps, solver: str = EULER_REFERENCE.solver,
                  guidance: float = 1.0) -> np.ndarray:
        """Integrate the flow from control states to the perturbation ``condition`` (standardised states)."""
        code = self._perturbation_code(condition)
        x0 = torch.as_tensor(states)
        self.backbone.eval()
        with self._ema_weights(), thread_limit(self.backbone.dim):
            velocity = guided_velocity(SourceBound(self.backbone, x0), torch.full((len(x0),), code), guidance)
            result = integrate(velocity, x0, solver=solver, n_steps=n_steps)
        self._last_nfe = result.nfe
        return result.x.numpy()

    def _perturbation_code(self, condition: str) -> int:
        if str(condition) not in self.perturbations:
            raise ExprflowInputError(f"Unknown perturbation {condition!r}; the model knows: {self.perturbations} "
                                     f"(control: {self.config.control_group!r}).")
        return self.perturbations.index(str(condition))

    # ---------------------------------------------------------- prediction
    def predict(self, adata_ctrl: AnnData, condition: str | None = None, n_steps: int = EULER_REFERENCE.n_steps, solver: str = EULER_REFERENCE.solver,
                guidance: float = 1.0, seed: int = 0, decode: str | None = None, layer: str | None = None) -> AnnData:
        """Predicted perturbed cells, one per control cell of ``adata_ctrl`` (never modified).

        Returns an AnnData with integer CSR counts (``decode="mean"``: decoder means; ``"residual"``: the
        control cell plus the predicted shift in expression space, module docstring), the model's
        ``var_names``, ``adata_ctrl``'s obs columns with ``condition_key`` set to ``condition``,
        ``obs["control_cell"]`` (the source cell's name), ``obs["source"] = "generated"`` and provenance in
        ``uns["exprflow"]``. ``condition`` defaults to the only perturbation when there is one. ``layer``:
        where ``adata_ctrl`` holds its counts (a layer name or ``"X"``; default: the model's layer).
        """
        if not self.is_trained:
            raise ExprflowInputError("The model is not trained yet: call train() (or load a trained model) first.")
        if condition is None:
            if len(self.perturbations) != 1:
                raise ExprflowInputError(f"Give condition=, one of {self.perturbations}.")
            condition = self.perturbations[0]
        mode = decode or self.config.decode
        if mode not in self.decode_modes:
            raise ExprflowInputError(f"decode must be one of {self.decode_modes}, got {mode!r}.")
        key = self.setup.condition_key
        if key in adata_ctrl.obs.columns:
            other = adata_ctrl.obs[key].astype(str) != self.config.control_group
            if other.any():
                raise ExprflowInputError(
                    f"{int(other.sum())} cells of adata_ctrl are not {key!r} == {self.config.control_group!r}; "
                    f"predict() maps control cells. Subset: adata[adata.obs[{key!r}] == {self.config.control_group!r}]."
                )
        start = time.perf_counter()
        states, _ = self.encode_states(adata_ctrl, layer)
        moved = self.transport(states, condition, n_steps=n_steps, solver=solver, guidance=guidance)
        if mode == "residual":
            counts = self.residual_counts(adata_ctrl, states, moved, seed)
        else:
            values = self.decode_states(moved, sample=mode == "sample", seed=seed)
            counts = sp.csr_matrix(values.astype(np.int32 if mode == "sample" else np.float32))
        return self.as_prediction(counts, adata_ctrl, condition, {
            "n_steps": n_steps, "solver": solver, "nfe": self._last_nfe, "guidance": guidance, "seed": seed,
            "decode": mode, "sampling_seconds": time.perf_counter() - start})

    def residual_counts(self, adata_ctrl: AnnData, states: np.ndarray, moved: np.ndarray, seed: int = 0) -> sp.csr_matrix:
        """Counts of ``y_ctrl + norm(mean(moved)) - norm(mean(states))`` (log1p-normalised, clipped at 0), with
        each control cell's own library size; ``norm`` = :func:`~exprflow.metrics.reference.normalise_rows`."""
        from exprflow.metrics.reference import normalise_rows
        from exprflow.models.perturbation_baselines import identity_prediction, normalised_to_counts

        raw = identity_prediction(adata_ctrl, self.setup.layer)
        shift = normalise_rows(self.decode_states(moved, sample=False)) - normalise_rows(self.decode_states(states, sample=False))
        y = np.asarray(normalise_rows(raw).toarray()) + shift
        return normalised_to_counts(y, np.asarray(raw.sum(axis=1)).ravel(), seed)

    def as_prediction(self, counts: sp.csr_matrix, adata_ctrl: AnnData, condition: str, info: dict,
                      method: str | None = None) -> AnnData:
        """Wrap predicted counts (rows = cells of ``adata_ctrl``) as the generated AnnData of the contract."""
        from exprflow.models.perturbation_baselines import prediction_adata

        return prediction_adata(counts, adata_ctrl, self.var_names, self.setup.condition_key, list(self.levels),
                                condition, {"model": method or type(self).__name__,
                                            "control_group": self.config.control_group, **info})

    def generate(self, *args, **kwargs):
        raise ExprflowInputError("PerturbationFlow predicts from control cells: use predict(adata_ctrl, condition=...).")
