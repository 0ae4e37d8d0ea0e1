"""Classifier two-sample tests (C2ST, Lopez-Paz & Oquab 2017) in the reference space.

A classifier learns to tell real test cells (label 0) from generated cells (label 1); the score is the
AUROC on held-out folds of a 5-fold stratified cross-validation (shuffled with ``seed``), averaged
over the folds. 0.5 means indistinguishable, 1.0 perfectly separable. Judge it two-sided against the
floor's value (docs/evaluation.md).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from exprflow.metrics.undefined import MetricUndefined

N_SPLITS = 5
N_NEIGHBORS = 10
LR_MAX_ITER = 5000


def c2st_auroc(x_real: np.ndarray, x_gen: np.ndarray, classifier: ClassifierMixin, *,
               n_splits: int = N_SPLITS, seed: int = 0) -> float:
    """Mean held-out AUROC of ``classifier`` separating ``x_real`` (0) from ``x_gen`` (1)."""
    if min(len(x_real), len(x_gen)) < n_splits:
        raise MetricUndefined(f"c2st: needs at least {n_splits} cells per set for {n_splits}-fold CV")
    features = np.vstack([x_real, x_gen]).astype(np.float64)
    labels = np.r_[np.zeros(len(x_real), dtype=int), np.ones(len(x_gen), dtype=int)]
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    aurocs = []
    # One thread: these small fits are dominated by thread start-up and spin-waiting otherwise.
    with threadpool_limits(limits=1):
        for train_idx, test_idx in folds.split(features, labels):
            model = clone(classifier).fit(features[train_idx], labels[train_idx])
            proba = model.predict_proba(features[test_idx])[:, 1]
            aurocs.append(roc_auc_score(labels[test_idx], proba))
    return float(np.mean(aurocs))


def c2st_knn(x_real: np.ndarray, x_gen: np.ndarray, *, n_neighbors: int = N_NEIGHBORS, seed: int = 0) -> float:
    """C2ST with a ``n_neighbors``-NN classifier (euclidean, uniform votes) on the PCA coordinates."""
    smallest_fold = min(len(x_real), len(x_gen)) * 2 * (N_SPLITS - 1) // N_SPLITS
    if smallest_fold < n_neighbors:
        raise MetricUndefined(f"c2st_knn: too few cells for a {n_neighbors}-NN classifier")
    return c2st_auroc(x_real, x_gen, KNeighborsClassifier(n_neighbors=n_neighbors), seed=seed)


def c2st_lr(x_real: np.ndarray, x_gen: np.ndarray, *, seed: int = 0) -> float:
    """C2ST with L2 logistic regression (C=1) on standardised PCA coordinates."""
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=LR_MAX_ITER))
    return c2st_auroc(x_real, x_gen, classifier, seed=seed)
