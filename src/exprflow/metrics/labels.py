"""Label accuracy for conditional generation (docs/evaluation.md, "Count-level metrics").

A logistic regression on the reference PCs, trained on real TRAIN cells with their condition labels,
predicts the label of each generated cell; the score is the fraction whose prediction equals the label
that was requested for it. The floor is the same classifier's accuracy on the real test cells.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from exprflow.metrics.undefined import MetricUndefined

LR_MAX_ITER = 5000


def fit_label_classifier(z_train: np.ndarray, labels: np.ndarray) -> Pipeline:
    """L2 logistic regression (C=1) on standardised PCA coordinates of the train cells."""
    labels = np.asarray(labels, dtype=str)
    if len(np.unique(labels)) < 2:
        raise MetricUndefined("label_accuracy: the train cells carry fewer than 2 condition levels")
    with threadpool_limits(limits=1):  # small problem: threads only add overhead
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=LR_MAX_ITER)).fit(z_train, labels)


def label_accuracy(classifier: Pipeline, z: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of cells ``z`` whose predicted label equals ``labels`` (the requested labels)."""
    if len(z) == 0:
        raise MetricUndefined("label_accuracy: no labelled cells")
    with threadpool_limits(limits=1):
        predicted = classifier.predict(z)
    return float(np.mean(predicted == np.asarray(labels, dtype=str)))
