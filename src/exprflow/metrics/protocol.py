"""``evaluate``: the evaluation protocol of docs/evaluation.md (``PROTOCOL_VERSION`` 1) in one call.

Steps:

1. Validate the three AnnDatas (genes, condition key, sizes, finite values); reorder generated genes
   to the real test order when only the order differs.
2. Groups: all cells, or each condition level with >= 20 real test cells (and >= 10 generated).
3. Floor pool: per group, a random subsample of real TRAIN cells the size of the group's test cells
   (stratified by level when conditional; at most half of the group's train cells).
4. Reference space (normalise, 30-component PCA) fitted on the real TRAIN cells minus the floor pool.
   Train cells inside a PCA fit have inflated projections (the components fit their noise: on pbmc3k
   their mean squared norm is ~30 % larger than that of unseen cells), so a floor drawn from the fitted
   cells would look unlike the test cells and the floor would be far too pessimistic (energy ratio ~0.3
   for held-out real cells as the "generator"). Holding the pool out makes floor, test and generated
   cells equally unseen by the PCA. The pool is held out even with ``floor=False`` so that the model's
   metrics do not depend on that flag.
5. Per group: subsample the larger of generated / real test at random to the size of the smaller and
   compute every metric (model row), then the same metrics between floor pool cells (as many as the
   compared test cells) and the same test cells (floor row). The floor's ``dcr`` is measured against the
   group's train cells minus the floor subsample (otherwise each cell finds itself at distance 0), for
   the subsample and the test cells alike.
6. Conditional: ``metrics`` / ``floor`` hold the averages over levels, ``per_condition`` /
   ``per_condition_floor`` the per-level values; ``label_accuracy`` is added.
7. Conditional: the whole population (``all_cells`` / ``all_cells_floor`` / ``all_cells_ratio_to_floor``):
   the cells of every scored level pooled (proportions as requested), compared as in step 5; its floor
   pool is the union of the levels' pools (already held out of the PCA, so nothing above changes).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from anndata import AnnData

from exprflow.errors import ExprflowInputError
from exprflow.metrics.comparison import METRIC_NAMES, CellSet, Reasons, Values, compare, guarded
from exprflow.metrics.inputs import MIN_CELLS, EvaluationInputs, prepare_inputs
from exprflow.metrics.labels import fit_label_classifier, label_accuracy
from exprflow.metrics.reference import N_COMPONENTS, ReferenceSpace
from exprflow.metrics.undefined import MetricUndefined

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MIN_TEST_CELLS_PER_LEVEL = 20
RATIO_METRICS: tuple[str, ...] = ("w2", "mmd", "energy", "coverage")


@dataclass
class _Group:
    level: str | None  # None: all cells (unconditional)
    test_rows: np.ndarray
    gen_rows: np.ndarray
    train_rows: np.ndarray
    floor_pool: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))  # random order


@dataclass
class _Outcome:
    model: tuple[Values, Reasons]
    floor: tuple[Values, Reasons] | None
    n_compared: int


def evaluate(real_test: AnnData, generated: AnnData, real_train: AnnData, *, layer: str | None = None,
             condition_key: str | None = None, counts: bool = True, seed: int = 0, floor: bool = True) -> dict:
    """Score generated cells against held-out real cells with the fixed protocol of docs/evaluation.md.

    Parameters
    ----------
    real_test
        held-out real cells (never seen in training).
    generated
        generated cells; counts in ``X``, same genes as ``real_test`` (any order).
    real_train
        the real cells the generator was trained on: the PCA is fitted on them minus the
        floor subsample (see the module docstring); also ``dcr``, the floor and the label classifier.
    layer
        layer of the REAL AnnDatas holding counts (None: ``X``).
    condition_key
        ``obs`` column present in all three; enables per-condition metrics (levels with
        >= 20 real test cells, averaged) and ``label_accuracy``.
    counts
        False for non-count data (e.g. FPKM): ``log1p`` without per-cell normalisation, and no
        library-size metrics.
    seed
        seeds every subsample and cross-validation split.
    floor
        also compute the floor row (real train subsample vs real test) and the ratios to it.

    Returns
    -------
    dict
        A JSON-serialisable dict: ``protocol_version``, ``n_test``, ``n_generated``, ``n_train``,
        ``n_compared``, ``n_pca_fit``, ``seed``, ``metrics``, ``floor``, ``ratio_to_floor``, ``unavailable`` (reason for
        every None value, by row), ``notes`` and, when conditional, ``per_condition``,
        ``per_condition_floor``, ``per_condition_n`` and the pooled whole population ``all_cells``,
        ``all_cells_floor``, ``all_cells_ratio_to_floor``, ``all_cells_n``. Values are floats or None, never NaN.

    Raises
    ------
    ExprflowInputError
        mismatched genes, a missing condition key or layer, fewer than 10 cells,
        non-finite or negative values, or no condition level with enough cells.
    """
    started = time.perf_counter()
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ExprflowInputError(f"seed must be a non-negative integer, got {seed!r}.")
    seed = int(seed)
    inputs = prepare_inputs(real_test, generated, real_train, layer=layer, condition_key=condition_key, counts=counts)
    notes = inputs.notes
    groups = _groups(inputs, condition_key, notes)
    for index, group in enumerate(groups):
        pool_size = min(len(group.test_rows), len(group.train_rows) // 2)
        group.floor_pool = np.random.default_rng([seed, index, 1]).permutation(group.train_rows)[:pool_size]
    pca_rows = np.setdiff1d(np.arange(inputs.train.shape[0]), np.concatenate([g.floor_pool for g in groups]))
    space = ReferenceSpace(N_COMPONENTS, counts=counts).fit(inputs.train[pca_rows])
    if space.n_components_ < N_COMPONENTS:
        notes.append(f"PCA uses {space.n_components_} components (the train matrix allows no more than that).")
    z_test, z_gen, z_train = (space.transform(x) for x in (inputs.test, inputs.generated, inputs.train))
    outcomes = [_evaluate_group(i, g, inputs, (z_test, z_gen, z_train), counts, seed, floor, notes)
                for i, g in enumerate(groups)]

    result: dict = {
        "protocol_version": PROTOCOL_VERSION,
        "n_test": int(inputs.test.shape[0]),
        "n_generated": int(inputs.generated.shape[0]),
        "n_train": int(inputs.train.shape[0]),
        "n_compared": int(sum(o.n_compared for o in outcomes)),
        "seed": seed,
        "counts": bool(counts),
        "layer": layer,
        "condition_key": condition_key,
        "n_components": int(space.n_components_),
        "n_pca_fit": int(len(pca_rows)),
    }
    if condition_key is None:
        metrics, metric_reasons = outcomes[0].model
        floor_values, floor_reasons = outcomes[0].floor if floor else ({}, {})
    else:
        metrics, metric_reasons = _average([o.model for o in outcomes], "metrics", notes)
        floor_values, floor_reasons = _average([o.floor for o in outcomes], "floor", notes) if floor else ({}, {})
        result["per_condition"] = {g.level: o.model[0] for g, o in zip(groups, outcomes)}
        result["per_condition_floor"] = {g.level: o.floor[0] for g, o in zip(groups, outcomes)} if floor else {}
        result["per_condition_n"] = {
            g.level: {"n_test": len(g.test_rows), "n_generated": len(g.gen_rows), "n_train": len(g.train_rows),
                      "n_compared": o.n_compared}
            for g, o in zip(groups, outcomes)
        }
        _add_label_accuracy(result, inputs, z_test, z_gen, z_train, metrics, metric_reasons,
                            floor_values if floor else None, floor_reasons)
        _add_all_cells(result, groups, inputs, (z_test, z_gen, z_train), counts, seed, floor, notes)
    ratios, ratio_reasons = _ratios(metrics, floor_values) if floor else ({}, {})
    if not floor:
        notes.append("floor not computed (floor=False): no floor row and no ratios.")
    unavailable = {"metrics": metric_reasons, "floor": floor_reasons, "ratio_to_floor": ratio_reasons,
                   **result.pop("_all_cells_unavailable", {})}
    result.update(metrics=metrics, floor=floor_values, ratio_to_floor=ratios, unavailable=unavailable, notes=notes)
    logger.info("evaluate: %d generated vs %d test cells in %.1f s", result["n_generated"], result["n_test"],
                time.perf_counter() - started)
    return result


def _add_all_cells(result: dict, groups: list[_Group], inputs: EvaluationInputs, z: tuple[np.ndarray, ...],
                   counts: bool, seed: int, floor: bool, notes: list[str]) -> None:
    """Step 7: every metric over the scored levels' cells pooled (``all_cells``), beside the averages."""
    rows = [np.sort(np.concatenate([getattr(g, name) for g in groups])) for name in ("test_rows", "gen_rows",
                                                                                  "train_rows")]
    pool = np.random.default_rng([seed, len(groups), 1]).permutation(np.concatenate([g.floor_pool for g in groups]))
    pooled = _Group(None, *rows, floor_pool=pool)
    outcome = _evaluate_group(len(groups), pooled, inputs, z, counts, seed, floor, notes)
    values, reasons = outcome.model
    floor_values, floor_reasons = outcome.floor if floor else ({}, {})
    ratios, ratio_reasons = _ratios(values, floor_values) if floor else ({}, {})
    result.update(all_cells=values, all_cells_floor=floor_values, all_cells_ratio_to_floor=ratios,
                  all_cells_n={"n_test": len(rows[0]), "n_generated": len(rows[1]), "n_train": len(rows[2]),
                               "n_compared": outcome.n_compared})
    result["_all_cells_unavailable"] = {"all_cells": reasons, "all_cells_floor": floor_reasons,
                                        "all_cells_ratio_to_floor": ratio_reasons}


def _groups(inputs: EvaluationInputs, condition_key: str | None, notes: list[str]) -> list[_Group]:
    """All cells as one group, or one group per condition level with enough cells."""
    if condition_key is None:
        return [_Group(None, *(np.arange(x.shape[0]) for x in (inputs.test, inputs.generated, inputs.train)))]
    test_levels = sorted({v for v in inputs.test_labels if v is not None})
    unmatched = sorted({v for v in inputs.generated_labels if v is not None} - set(test_levels))
    if unmatched:
        notes.append(f"generated levels without real test cells are not scored per condition: {unmatched[:10]}.")
    groups = []
    for level in test_levels:
        test_rows = np.flatnonzero(inputs.test_labels == level)
        gen_rows = np.flatnonzero(inputs.generated_labels == level)
        if len(test_rows) < MIN_TEST_CELLS_PER_LEVEL:
            notes.append(f"level {level!r} skipped: {len(test_rows)} real test cells (< {MIN_TEST_CELLS_PER_LEVEL}).")
        elif len(gen_rows) < MIN_CELLS:
            notes.append(f"level {level!r} skipped: {len(gen_rows)} generated cells (< {MIN_CELLS}).")
        else:
            groups.append(_Group(level, test_rows, gen_rows, np.flatnonzero(inputs.train_labels == level)))
    if not groups:
        sizes = {level: int(np.sum(inputs.test_labels == level)) for level in test_levels[:10]}
        raise ExprflowInputError(
            f"No level of {condition_key!r} has >= {MIN_TEST_CELLS_PER_LEVEL} real test cells and >= "
            f"{MIN_CELLS} generated cells (real test cells per level: {sizes}), so no per-condition metric "
            "can be computed. Use a larger test set, generate cells for the test levels, or evaluate "
            "without condition_key."
        )
    return groups


def _subsample(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) == n else np.sort(rng.choice(rows, size=n, replace=False))


def _evaluate_group(index: int, group: _Group, inputs: EvaluationInputs, z: tuple[np.ndarray, ...],
                    counts: bool, seed: int, floor: bool, notes: list[str]) -> _Outcome:
    z_test, z_gen, z_train = z
    rng = np.random.default_rng([seed, index])
    where = "all cells" if group.level is None else f"level {group.level!r}"
    n = min(len(group.test_rows), len(group.gen_rows))
    if len(group.test_rows) != len(group.gen_rows):
        notes.append(f"{where}: {len(group.gen_rows)} generated vs {len(group.test_rows)} real test cells; "
                     f"the larger set was subsampled at random to {n} cells (seed {seed}).")
    test_rows = _subsample(group.test_rows, n, rng)
    real = CellSet.from_rows(inputs.test, z_test, test_rows, counts=counts)
    gen = CellSet.from_rows(inputs.generated, z_gen, _subsample(group.gen_rows, n, rng), counts=counts)
    model = compare(gen, real, z_train[group.train_rows], seed=seed)
    if not floor:
        return _Outcome(model, None, n)

    m = min(n, len(group.floor_pool))
    if m < MIN_CELLS:
        reason = f"floor: {where} has {len(group.train_rows)} real train cells, too few for a floor of {MIN_CELLS}+"
        return _Outcome(model, ({name: None for name in METRIC_NAMES}, dict.fromkeys(METRIC_NAMES, reason)), n)
    floor_rows = np.sort(group.floor_pool[:m])
    if m < n:
        notes.append(f"{where}: {len(group.train_rows)} train cells; the floor compares {m} train vs {m} test cells.")
        real = CellSet.from_rows(inputs.test, z_test, _subsample(test_rows, m, rng), counts=counts)
    reference = z_train[np.setdiff1d(group.train_rows, floor_rows)]  # train minus the floor subsample, for dcr
    floor_row = compare(CellSet.from_rows(inputs.train, z_train, floor_rows, counts=counts), real, reference, seed=seed)
    return _Outcome(model, floor_row, n)


def _average(rows: list[tuple[Values, Reasons]], row_name: str, notes: list[str]) -> tuple[Values, Reasons]:
    """Mean over condition levels of each metric, skipping (and noting) levels where it is undefined."""
    values: Values = {}
    reasons: Reasons = {}
    for name in METRIC_NAMES:
        defined = [v[name] for v, _ in rows if v[name] is not None]
        values[name] = float(np.mean(defined)) if defined else None
        if not defined:
            reasons[name] = "undefined in every condition level: " + next(r[name] for _, r in rows if name in r)
        elif len(defined) < len(rows):
            notes.append(f"{row_name}.{name}: averaged over the {len(defined)} of {len(rows)} levels "
                         "where it is defined.")
    return values, reasons


def _ratios(metrics: Values, floor_values: Values) -> tuple[Values, Reasons]:
    ratios: Values = {}
    reasons: Reasons = {}
    for name in RATIO_METRICS:
        value, base = metrics.get(name), floor_values.get(name)
        if value is None or base is None:
            ratios[name], reasons[name] = None, f"{name} is undefined for the model or the floor"
        elif base == 0.0:
            ratios[name], reasons[name] = None, f"the floor's {name} is 0"
        else:
            ratios[name] = value / base
    return ratios, reasons


def _add_label_accuracy(result: dict, inputs: EvaluationInputs, z_test: np.ndarray, z_gen: np.ndarray,
                        z_train: np.ndarray, metrics: Values, metric_reasons: Reasons,
                        floor_values: Values | None, floor_reasons: Reasons) -> None:
    """Accuracy on all labelled generated cells (floor: on the real test cells), and per-level recall."""
    train_ok = np.array([v is not None for v in inputs.train_labels])
    try:
        classifier, reason = fit_label_classifier(z_train[train_ok], inputs.train_labels[train_ok]), None
    except MetricUndefined as exc:
        classifier, reason = None, str(exc)
    rows = [(metrics, metric_reasons, z_gen, inputs.generated_labels, "per_condition")]
    if floor_values is not None:
        rows.append((floor_values, floor_reasons, z_test, inputs.test_labels, "per_condition_floor"))
    for values, reasons, z, labels, per_level_key in rows:
        labelled = np.array([v is not None for v in labels])
        if classifier is None:
            values["label_accuracy"], reasons["label_accuracy"] = None, reason
        else:
            values["label_accuracy"], why = _accuracy(classifier, z[labelled], labels[labelled])
            if why is not None:
                reasons["label_accuracy"] = why
        for level, level_values in result[per_level_key].items():
            in_level = labels == level
            level_values["label_accuracy"] = (
                None if classifier is None else _accuracy(classifier, z[in_level], labels[in_level])[0]
            )
    if classifier is not None:
        requested = {v for v in inputs.generated_labels if v is not None}
        unknown = sorted(requested - set(classifier.classes_))
        if unknown:
            inputs.notes.append(f"label_accuracy: generated levels absent from the train cells count as "
                                f"errors: {unknown[:10]}.")


def _accuracy(classifier, z: np.ndarray, labels: np.ndarray) -> tuple[float | None, str | None]:
    return guarded("label_accuracy", lambda: label_accuracy(classifier, z, labels))
