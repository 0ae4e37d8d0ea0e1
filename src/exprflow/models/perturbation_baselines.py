"""Baselines for perturbation response (the rows PerturbationFlow is compared with), one interface.

Gene-space baselines work on ``y = log1p(counts / l * 1e4)``; a control cell's prediction ``y'`` is mapped
back to counts with the cell's own library size (``expm1(y') * l / 1e4``, then unbiased stochastic
rounding). Every baseline has ``fit(adata, condition_key=, control_group=, layer=, cell_type_key=)``,
``predict_normalised(adata_ctrl, condition)`` and ``predict(adata_ctrl, condition, seed=)`` (CSR counts):

- ``no_change`` (:class:`NoChange`): the control cells themselves (no response).
- ``train_mean`` (:class:`TrainMean`): every cell is predicted as the mean of the perturbed training cells
  (Csendes et al. 2025 found this hard to beat): ``y' = mean(y | p)``.
- ``mean_shift`` (:class:`MeanShift`): the additive shift ``y' = max(y + delta_p, 0)``, ``delta_p =
  mean(y | p) - mean(y | ctrl)`` over the training cells.
- ``ridge`` (:class:`RidgeBaseline`, in ``perturbation_linear``): a linear map of a cell type's control
  profile to its response (Ahlmann-Eltze, Huber and Anders 2025).
- ``latent_arithmetic`` (:class:`LatentArithmetic`, scGen-style vector arithmetic, Lotfollahi et al.
  2019): the mean shift in a trained :class:`~exprflow.models.PerturbationFlow`'s standardised latent
  state ``[z, log l]``, decoded by its count decoder. Built with :meth:`LatentArithmetic.from_model`.

With cell types, the shifts and the train mean weigh every cell type that has control AND perturbed
cells equally (scGen balances cell types by resampling them to equal size, which gives these means):
``delta = mean_t mean(. | p, t) - mean_t mean(. | ctrl, t)``. Without cell types the means are pooled.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from exprflow.data.perturbation import PerturbationData, pair_groups, prepare_perturbation
from exprflow.errors import ExprflowInputError
from exprflow.metrics.reference import TARGET_SUM, normalise_rows
from exprflow.registry import Registry

#: name -> baseline class (``exprflow predict --baseline NAME``)
BASELINES: Registry = Registry("perturbation baseline")


def identity_prediction(adata_ctrl: AnnData, layer: str | None = None) -> sp.csr_matrix:
    """The control counts unchanged (a copy), as the prediction of the perturbed cells."""
    raw = adata_ctrl.layers[layer] if layer else adata_ctrl.X
    return sp.csr_matrix(raw, dtype=np.float32, copy=True)


def balanced_mean(values: np.ndarray, data: PerturbationData, control: bool) -> np.ndarray:
    """``(n_perturbations, D)``: per perturbation, the mean over its paired cell types of the perturbed
    (``control=False``) or the matching control (``control=True``) cells' mean ``values``."""
    groups = pair_groups(data)
    out = []
    for p in range(len(data.perturbations)):
        members = np.flatnonzero(groups.perturbation == p)
        rows = [groups.controls[g] if control else np.flatnonzero(groups.group == g) for g in members]
        out.append(np.mean([values[r].mean(0) for r in rows], axis=0))
    return np.asarray(out)


def balanced_shift(values: np.ndarray, data: PerturbationData) -> np.ndarray:
    """``(n_perturbations, D)`` shifts of ``values`` (one row per kept cell): perturbed minus control means,
    weighing the cell types that have both arms equally (module docstring)."""
    return balanced_mean(values, data, control=False) - balanced_mean(values, data, control=True)


def _code(data_perturbations: list[str], condition: str) -> int:
    if str(condition) not in data_perturbations:
        raise ExprflowInputError(f"Unknown perturbation {condition!r}; known: {data_perturbations}.")
    return data_perturbations.index(str(condition))


def stochastic_round(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``floor(v) + Bernoulli(v - floor(v))``: integer counts with the same expectation as ``v``."""
    low = np.floor(values)
    return (low + (rng.random(values.shape) < values - low)).astype(np.int32)


def normalised_to_counts(y: np.ndarray, library: np.ndarray, seed: int = 0) -> sp.csr_matrix:
    """Integer CSR counts ``round(expm1(y) * l / 1e4)`` (stochastic rounding) for log1p-normalised rows ``y``."""
    expected = np.expm1(np.maximum(y, 0.0)) * (np.asarray(library, float)[:, None] / TARGET_SUM)
    return sp.csr_matrix(stochastic_round(expected, np.random.default_rng(seed)))


def prediction_adata(counts: sp.csr_matrix, adata_ctrl: AnnData, var_names: list[str], condition_key: str,
                     levels: list[str], condition: str, provenance: dict) -> AnnData:
    """Predicted counts (rows = cells of ``adata_ctrl``) as the generated AnnData of the contract: the
    ``var_names``, ``adata_ctrl``'s obs columns with ``condition_key`` set to ``condition``,
    ``obs["control_cell"]`` (the source cell's name), ``obs["source"] = "generated"``, provenance in
    ``uns["exprflow"]`` (plus the package version and the condition)."""
    from exprflow import __version__
    from exprflow.output.anndata import generated_adata

    out = generated_adata(counts, var_names, condition_key=condition_key, levels=levels,
                          codes=np.full(counts.shape[0], levels.index(str(condition))),
                          provenance={**provenance, "version": __version__, "condition": str(condition)})
    for column in adata_ctrl.obs.columns:
        if column not in out.obs.columns:
            out.obs[column] = adata_ctrl.obs[column].to_numpy()
    out.obs["control_cell"] = np.asarray(adata_ctrl.obs_names, dtype=str)
    return out


class GeneSpaceBaseline:
    """A baseline in log1p-normalised gene space; subclasses set state in :meth:`_fit` and define
    :meth:`predict_normalised`."""

    name = "gene_space"

    def fit(self, adata: AnnData, *, condition_key: str, control_group: str, layer: str | None = None,
            cell_type_key: str | None = None) -> "GeneSpaceBaseline":
        """Fit on control and perturbed training cells (``adata`` is never modified)."""
        data = prepare_perturbation(adata, condition_key=condition_key, control_group=control_group, layer=layer,
                                    cell_type_key=cell_type_key)
        self.perturbations, self.layer = data.perturbations, layer
        self.condition_key, self.control_group = condition_key, str(control_group)
        self.levels, self.var_names = list(data.counts.condition_levels), [str(g) for g in data.counts.var_names]
        self._fit(np.asarray(normalise_rows(data.counts.X).toarray()), data)
        return self

    def _fit(self, y: np.ndarray, data: PerturbationData) -> None:
        """Nothing to learn by default."""

    def control_normalised(self, adata_ctrl: AnnData) -> np.ndarray:
        """``log1p(counts / l * 1e4)`` of the control cells (dense, cells x genes)."""
        return np.asarray(normalise_rows(identity_prediction(adata_ctrl, self.layer)).toarray())

    def predict_normalised(self, adata_ctrl: AnnData, condition: str) -> np.ndarray:
        """Predicted log1p-normalised expression, one row per control cell."""
        raise NotImplementedError

    def predict(self, adata_ctrl: AnnData, condition: str, seed: int = 0) -> sp.csr_matrix:
        """Integer counts: ``expm1(predicted y) * l / 1e4`` per cell (its own library size), stochastically rounded."""
        library = np.asarray(identity_prediction(adata_ctrl, self.layer).sum(axis=1)).ravel()
        return normalised_to_counts(self.predict_normalised(adata_ctrl, condition), library, seed)

    def predict_adata(self, adata_ctrl: AnnData, condition: str, seed: int = 0) -> AnnData:
        """:meth:`predict` as the AnnData that :meth:`PerturbationFlow.predict` returns (obs, provenance)."""
        counts = self.predict(adata_ctrl, condition, seed=seed)
        return prediction_adata(counts, adata_ctrl, self.var_names, self.condition_key, self.levels, condition,
                                {"model": self.name, "control_group": self.control_group, "seed": seed})


@BASELINES.register("no_change")
class NoChange(GeneSpaceBaseline):
    """The control cells as the prediction (module docstring)."""

    name = "no_change"

    def predict_normalised(self, adata_ctrl: AnnData, condition: str) -> np.ndarray:
        _code(self.perturbations, condition)
        return self.control_normalised(adata_ctrl)

    def predict(self, adata_ctrl: AnnData, condition: str, seed: int = 0) -> sp.csr_matrix:
        """The control counts unchanged (no rounding noise)."""
        _code(self.perturbations, condition)
        return sp.csr_matrix(identity_prediction(adata_ctrl, self.layer), dtype=np.int32)


@BASELINES.register("train_mean")
class TrainMean(GeneSpaceBaseline):
    """The (cell-type balanced) mean of the perturbed training cells, for every cell (module docstring)."""

    name = "train_mean"

    def _fit(self, y: np.ndarray, data: PerturbationData) -> None:
        self.mean = balanced_mean(y, data, control=False)

    def predict_normalised(self, adata_ctrl: AnnData, condition: str) -> np.ndarray:
        row = self.mean[_code(self.perturbations, condition)]
        return np.broadcast_to(row, (adata_ctrl.n_obs, row.size)).copy()


@BASELINES.register("mean_shift")
class MeanShift(GeneSpaceBaseline):
    """Gene-space additive mean shift in log1p-normalised expression (module docstring)."""

    name = "mean_shift"

    def _fit(self, y: np.ndarray, data: PerturbationData) -> None:
        self.delta = balanced_shift(y, data)

    def predict_normalised(self, adata_ctrl: AnnData, condition: str) -> np.ndarray:
        """``max(log1p(counts / l * 1e4) + delta, 0)`` per control cell (dense, cells x genes)."""
        return np.maximum(self.control_normalised(adata_ctrl) + self.delta[_code(self.perturbations, condition)], 0.0)


@BASELINES.register("latent_arithmetic")
class LatentArithmetic:
    """scGen-style ``s_ctrl + delta`` in a trained PerturbationFlow's latent state, decoded to counts."""

    name = "latent_arithmetic"

    @classmethod
    def from_model(cls, model, adata: AnnData | None = None) -> "LatentArithmetic":
        """The latent shift of ``model``'s training cells; a loaded model needs them again as ``adata``
        (control and perturbed cells, the same obs keys as in training)."""
        return cls().fit(model, adata)

    def fit(self, model, adata: AnnData | None = None) -> "LatentArithmetic":
        """Shift from ``model``'s training cells (kept by a model trained in this session) or from ``adata``."""
        self.model = model
        if adata is None:
            if model.data is None:
                raise ExprflowInputError("latent_arithmetic needs the training cells of a loaded model: pass "
                                         "adata= (Python) or --train FILE (exprflow predict).")
            self.delta = balanced_shift(model.training_states(), model.pdata)
            return self
        data = prepare_perturbation(adata, condition_key=model.setup.condition_key,
                                    control_group=model.config.control_group, layer=model.setup.layer,
                                    cell_type_key=model.config.cell_type_key)
        if data.perturbations != model.perturbations:
            raise ExprflowInputError(f"adata has perturbations {data.perturbations}; the model knows "
                                     f"{model.perturbations}.")
        states, _ = model.encode_states(adata[data.counts.kept])
        self.delta = balanced_shift(states, data)
        return self

    def predict(self, adata_ctrl: AnnData, condition: str, seed: int = 0, decode: str = "sample") -> sp.csr_matrix:
        """Counts (``decode="sample"``) or decoder means (``"mean"``) for the shifted states of ``adata_ctrl``."""
        states, _ = self.model.encode_states(adata_ctrl)
        moved = states + self.delta[self.model._perturbation_code(condition)]
        values = self.model.decode_states(moved.astype(np.float32), sample=decode == "sample", seed=seed)
        return sp.csr_matrix(values.astype(np.int32 if decode == "sample" else np.float32))

    def predict_adata(self, adata_ctrl: AnnData, condition: str, seed: int = 0, decode: str = "sample") -> AnnData:
        """:meth:`predict` wrapped by the model's :meth:`~exprflow.models.PerturbationFlow.as_prediction`."""
        counts = self.predict(adata_ctrl, condition, seed=seed, decode=decode)
        return self.model.as_prediction(counts, adata_ctrl, condition, {"seed": seed, "decode": decode}, method=self.name)


from exprflow.models import perturbation_linear  # noqa: E402,F401  (registers "ridge")
