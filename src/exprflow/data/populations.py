"""Populations of cells: the unit that :class:`~exprflow.models.PopulationFlow` generates jointly.

A *population* is ``N`` cells drawn from the cells of one *group* (an ``obs`` column such as
``sample_id`` (donor x condition) or ``condition``). With few real samples (kang2018_ifnb_small has 4)
training populations are random subsets of a group::

    composition=None        N cells of the group, uniformly without replacement: the cell-type
                            proportions vary only by sampling (hypergeometric)
    concentration=a         proportions q ~ Dirichlet(a * p_g) around the group's cell-type
                            proportions p_g (labels from ``composition_key``), counts
                            n ~ Multinomial(N, q), then n_k cells of type k from the group, without
                            replacement, or with replacement (bootstrap) for a type with fewer than
                            n_k cells in the group

With a concentration the composition is a population-level random variable (the smaller ``a``, the
more it varies) that a joint model can learn and an independent per-cell model cannot.

Example::

    sampler = population_sampler(adata.obs, "sample_id", 64, composition_key="cell_type", concentration=10)
    idx, groups = sampler.draw_many(np.random.default_rng(0), 100)     # (100, 64) row indices, (100,) codes
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from exprflow.errors import ExprflowInputError


def _codes(obs: pd.DataFrame, key: str, what: str) -> tuple[np.ndarray, list[str]]:
    """Integer codes and level names of the ``obs`` column ``key`` (clear errors for a missing key or NaN)."""
    if key not in obs.columns:
        raise ExprflowInputError(
            f"The {what} key {key!r} is not an obs column; available: {', '.join(map(str, obs.columns)) or 'none'}."
        )
    values = obs[key]
    if values.isna().any():
        raise ExprflowInputError(
            f"obs[{key!r}] has {int(values.isna().sum())} missing value(s); every cell needs a {what}. "
            "Drop those cells or fill the column."
        )
    codes, levels = pd.factorize(values.astype(str), sort=True)
    return codes.astype(np.int64), [str(v) for v in levels]


@dataclass(frozen=True, eq=False)
class PopulationSampler:
    """Draws populations of ``population_size`` cells (row indices) from the cells of one group.

    Parameters
    ----------
    groups
        group code per cell ``(n_cells,)`` in ``[0, n_groups)`` (all zeros: one group).
    population_size
        ``N``, the cells per population.
    labels
        cell-type code per cell (needed with ``concentration``).
    concentration
        Dirichlet concentration ``a`` of the composition (None: plain random subsets).
    replace
        draw plain subsets with replacement (bootstrap), so a group may have fewer than N cells.
    """

    groups: np.ndarray
    population_size: int
    labels: np.ndarray | None = None
    concentration: float | None = None
    replace: bool = False

    def __post_init__(self) -> None:
        n = int(self.population_size)
        if n < 1:
            raise ExprflowInputError(f"population_size must be a positive integer, got {self.population_size}.")
        if self.concentration is not None:
            if not float(self.concentration) > 0:
                raise ExprflowInputError(f"concentration must be > 0 (or None), got {self.concentration}.")
            if self.labels is None:
                raise ExprflowInputError(
                    "A Dirichlet composition (concentration) needs cell-type labels: give composition_key."
                )
        if self.labels is not None and len(self.labels) != len(self.groups):
            raise ExprflowInputError(f"labels has {len(self.labels)} entries for {len(self.groups)} cells.")
        members = self.members
        if not members:
            raise ExprflowInputError("There are no cells to draw populations from.")
        small = {g: len(m) for g, m in members.items() if len(m) < n}
        if small and not self.replace and self.concentration is None:
            raise ExprflowInputError(
                f"{len(small)} group(s) have fewer cells than population_size={n} (group code: cells "
                f"{small}); lower population_size, drop those groups, or draw with replacement (replace=True)."
            )

    @cached_property
    def members(self) -> dict[int, np.ndarray]:
        """Group code -> row indices of its cells (groups without cells are left out)."""
        groups = np.asarray(self.groups)
        return {int(g): np.flatnonzero(groups == g) for g in np.unique(groups)}

    @cached_property
    def group_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, probabilities)``: groups are drawn in proportion to their number of cells."""
        members = self.members
        codes = np.array(sorted(members), dtype=np.int64)
        sizes = np.array([len(members[c]) for c in codes], dtype=float)
        return codes, sizes / sizes.sum()

    def draw(self, rng: np.random.Generator, group: int | None = None) -> tuple[np.ndarray, int]:
        """One population: ``(row indices (N,), group code)``; the group is drawn by size unless given."""
        members = self.members
        if group is None:
            codes, p = self.group_weights
            group = int(rng.choice(codes, p=p))
        if group not in members:
            raise ExprflowInputError(f"Group code {group} has no cells; known codes: {sorted(members)}.")
        rows = members[group]
        if self.concentration is None:
            return rng.choice(rows, size=self.population_size, replace=self.replace), group
        return self._draw_composition(rng, rows), group

    def _draw_composition(self, rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
        """Dirichlet-resampled cell-type counts around the group's proportions (module docstring)."""
        types, sizes = np.unique(np.asarray(self.labels)[rows], return_counts=True)
        q = rng.dirichlet(float(self.concentration) * sizes / sizes.sum())
        counts = rng.multinomial(self.population_size, q)
        labels = np.asarray(self.labels)[rows]
        parts = []
        for k, n_k in zip(types, counts):
            if n_k == 0:
                continue
            pool = rows[labels == k]
            parts.append(rng.choice(pool, size=n_k, replace=bool(n_k > len(pool))))
        return rng.permutation(np.concatenate(parts))

    def draw_many(self, rng: np.random.Generator, n_populations: int,
                  group: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``n_populations`` populations: row indices ``(P, N)`` and group codes ``(P,)``."""
        draws = [self.draw(rng, group) for _ in range(int(n_populations))]
        return np.stack([d[0] for d in draws]), np.array([d[1] for d in draws], dtype=np.int64)


def population_sampler(
    obs: pd.DataFrame,
    group_key: str | None,
    population_size: int,
    *,
    composition_key: str | None = None,
    concentration: float | None = None,
    replace: bool = False,
) -> PopulationSampler:
    """A :class:`PopulationSampler` over the rows of ``obs``: groups from ``group_key`` (None: one group),
    cell types from ``composition_key`` (clear errors for missing keys, missing values, small groups)."""
    groups = np.zeros(len(obs), dtype=np.int64) if group_key is None else _codes(obs, group_key, "group")[0]
    labels = None if composition_key is None else _codes(obs, composition_key, "composition")[0]
    return PopulationSampler(groups, population_size, labels, concentration, replace)


def population_composition(labels: np.ndarray, n_types: int) -> np.ndarray:
    """Cell-type proportions of each population: integer labels ``(P, N)`` -> ``(P, n_types)``."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must have shape (populations, cells), got {labels.shape}")
    counts = np.stack([np.bincount(row, minlength=n_types) for row in labels])
    return counts / labels.shape[1]


class PopulationDataset(Dataset):
    """``n_items`` populations of flow states: ``{"x": (N, d) float32, "cond": group code}``.

    Item ``i`` is drawn with ``numpy.random.default_rng([seed, i])``, so a run is reproducible and
    independent of the loader's order and workers. ``"cond"`` is left out when ``conditional=False``.
    """

    def __init__(self, states: np.ndarray, sampler: PopulationSampler, n_items: int, seed: int = 0,
                 conditional: bool = True) -> None:
        if len(states) != len(sampler.groups):
            raise ValueError(f"{len(states)} states for a sampler over {len(sampler.groups)} cells")
        self.states = np.ascontiguousarray(states, dtype=np.float32)
        self.sampler = sampler
        self.n_items = int(n_items)
        self.seed = int(seed)
        self.conditional = conditional

    def __len__(self) -> int:
        return self.n_items

    def __getitem__(self, i: int) -> dict:
        rows, group = self.sampler.draw(np.random.default_rng([self.seed, int(i)]))
        item = {"x": torch.from_numpy(self.states[rows])}
        if self.conditional:
            item["cond"] = group
        return item
