"""Perturbation fields of the data layer: ``condition_key`` + ``control_group`` (+ optional cell type).

:func:`prepare_perturbation` validates an AnnData for perturbation-response models and returns an
immutable :class:`PerturbationData`: the counts (a :class:`~exprflow.data.CountData` whose condition is
the perturbation), which level is the control, and optional cell-type codes used to pair control and
perturbed cells within a cell type. Errors say what is wrong and how to fix it:

- a missing ``condition_key`` / ``control_group`` / ``cell_type_key``;
- a ``control_group`` that is not a level of the condition (the levels are listed);
- a condition with a single level (nothing to learn a response from);
- no control cells, or cell-type labels missing for some cells.

:func:`pair_groups` gives, per perturbed cell, the group (cell type x perturbation level) it is paired
in, and the control cells each group draws from (same cell type; all control cells without types).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from anndata import AnnData

from exprflow.data.counts import CountData, prepare_counts
from exprflow.data.io import read_adata
from exprflow.data.validation import check_conditions
from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class PerturbationData:
    """Validated perturbation data: counts with the perturbation as condition, the control, cell types.

    Attributes
    ----------
    counts
        :class:`CountData`; ``counts.conditions`` codes the ``condition_key`` levels.
    control_group
        The control level's name; ``control_code`` its code in ``counts.condition_levels``.
    perturbations
        The non-control levels, in level order; a perturbation's code for the flow is its index here.
    cell_types
        Cell-type code per kept cell (int64) or ``None``; ``cell_type_levels`` their names.
    """

    counts: CountData
    control_group: str
    control_code: int
    perturbations: list[str]
    cell_types: np.ndarray | None
    cell_type_levels: list[str] | None
    cell_type_key: str | None

    @property
    def is_control(self) -> np.ndarray:
        """Boolean mask of the control cells."""
        return self.counts.conditions == self.control_code

    def perturbation_codes(self) -> np.ndarray:
        """Per cell: index in :attr:`perturbations`, or -1 for control cells."""
        levels = self.counts.condition_levels
        lookup = np.array([self.perturbations.index(lv) if lv != self.control_group else -1 for lv in levels])
        return lookup[self.counts.conditions]


def check_perturbation_levels(levels: list[str], condition_key: str, control_group: str | None) -> int:
    """The control's code among ``levels``; a clear error for a missing/unknown control or one level."""
    if control_group is None:
        raise ExprflowInputError(
            f"A perturbation model needs control_group: the level of {condition_key!r} that holds the "
            f"unperturbed cells (levels: {levels}); e.g. control_group={levels[0]!r}."
        )
    if len(levels) < 2:
        raise ExprflowInputError(
            f"adata.obs[{condition_key!r}] has a single level ({levels[0]!r}); a perturbation model needs control "
            "cells AND perturbed cells. Include the perturbed cells in the AnnData."
        )
    if str(control_group) not in levels:
        raise ExprflowInputError(
            f"control_group {control_group!r} is not a level of adata.obs[{condition_key!r}] "
            f"(levels: {levels}). Pass one of these."
        )
    return levels.index(str(control_group))


def prepare_perturbation(
    adata: AnnData | str,
    *,
    condition_key: str | None,
    control_group: str | None,
    layer: str | None = None,
    cell_type_key: str | None = None,
) -> PerturbationData:
    """Validate ``adata`` for a perturbation model (nothing is modified); see the module docstring."""
    adata = read_adata(adata)
    counts = prepare_counts(adata, layer=layer, condition_key=condition_key, require_counts=True)
    return perturbation_from_counts(counts, adata, control_group, cell_type_key)


def perturbation_from_counts(counts: CountData, adata: AnnData, control_group: str | None,
                             cell_type_key: str | None = None) -> PerturbationData:
    """:class:`PerturbationData` from already validated counts of ``adata`` (conditioned on the perturbation)."""
    if counts.condition_key is None:
        raise ExprflowInputError(
            "A perturbation model needs condition_key: the obs column that says which cells are control and "
            f"which are perturbed (obs columns: {list(adata.obs.columns)})."
        )
    levels = counts.condition_levels
    control_code = check_perturbation_levels(levels, counts.condition_key, control_group)
    cell_types, type_levels = None, None
    if cell_type_key is not None:
        if cell_type_key not in adata.obs.columns:
            raise ExprflowInputError(
                f"cell_type_key {cell_type_key!r} is not a column of adata.obs (columns: {list(adata.obs.columns)})."
            )
        missing = adata.obs[cell_type_key].isna().to_numpy()[counts.kept]
        if missing.any():
            arms = sorted({levels[c] for c in counts.conditions[missing]})
            raise ExprflowInputError(
                f"adata.obs[{cell_type_key!r}] is missing for {int(missing.sum())} cells (conditions {arms}). "
                "Pairing within cell type needs a label on every cell: label them (e.g. a classifier trained "
                "on the labelled cells), drop them, or leave cell_type_key unset."
            )
        codes, type_levels = check_conditions(adata, cell_type_key)
        cell_types = np.ascontiguousarray(codes[counts.kept], dtype=np.int64)
        cell_types.flags.writeable = False
    data = PerturbationData(
        counts=counts, control_group=str(control_group), control_code=control_code,
        perturbations=[lv for lv in levels if lv != str(control_group)],
        cell_types=cell_types, cell_type_levels=type_levels, cell_type_key=cell_type_key,
    )
    pair_groups(data)  # refuses data without any pairable perturbed cells
    return data


@dataclass(frozen=True)
class PairGroups:
    """Pairing groups: ``group[i]`` for every kept cell (-1: not paired) and control rows per group."""

    group: np.ndarray  # (n_cells,) group of each perturbed cell, -1 for control / unpairable cells
    perturbation: np.ndarray  # (n_groups,) perturbation index of each group
    controls: list[np.ndarray]  # per group: rows of the control cells it pairs with
    names: list[str]


def pair_groups(data: PerturbationData) -> PairGroups:
    """Group perturbed cells by (cell type, perturbation); each group pairs with its type's control cells.

    Perturbed cells of a cell type without control cells cannot be paired; they are left out (warning).
    """
    pert = data.perturbation_codes()
    types = data.cell_types if data.cell_types is not None else np.zeros(data.counts.n_cells, dtype=np.int64)
    type_names = data.cell_type_levels or ["all cells"]
    control = pert < 0
    group = np.full(data.counts.n_cells, -1, dtype=np.int64)
    perturbation, controls, names, unpaired = [], [], [], 0
    for t in np.unique(types):
        ctrl_rows = np.flatnonzero(control & (types == t))
        for p in range(len(data.perturbations)):
            rows = np.flatnonzero((pert == p) & (types == t))
            if rows.size == 0:
                continue
            if ctrl_rows.size == 0:
                unpaired += rows.size
                continue
            group[rows] = len(controls)
            perturbation.append(p)
            controls.append(ctrl_rows)
            names.append(f"{type_names[t]}:{data.perturbations[p]}")
    if unpaired:
        logger.warning("%d perturbed cells belong to cell types without control cells and are not used.", unpaired)
    if not controls:
        raise ExprflowInputError(
            "No perturbed cell can be paired with a control cell (of its cell type, when cell_type_key is set). "
            "Check condition_key / control_group / cell_type_key."
        )
    return PairGroups(group, np.asarray(perturbation, dtype=np.int64), controls, names)
