"""Plotting in scanpy's style (``import exprflow as ef; ef.pl.real_vs_generated(...)``).

Every function draws one figure and returns it; ``save="path.png"`` writes it (atomically) and
closes it, ``show=True`` shows it.

=========================  ==========================================================
:func:`real_vs_generated`  real and generated cells in one UMAP / PCA
:func:`metrics`            per-condition metrics of ``evaluate`` beside the floor
:func:`loss`               loss curves of each training phase
:func:`trajectories`       generated trajectories over the real cells (off-lineage grey)
:func:`fold_changes`       predicted vs real log-fold-changes of a perturbation
:func:`fold_change_panels` the same for several methods from fold-change vectors, one panel each
=========================  ==========================================================
"""

from exprflow.plotting.embedding import real_vs_generated
from exprflow.plotting.lineages import trajectories
from exprflow.plotting.perturbation import fold_change_panels, fold_changes
from exprflow.plotting.scores import metrics
from exprflow.plotting.training import loss

__all__ = ["fold_change_panels", "fold_changes", "loss", "metrics", "real_vs_generated", "trajectories"]
