"""Figures people would rather look at than read: UMAPs of real vs generated, loss curves, perturbation LFCs."""

from exprflow.plotting.figures import plot_loss_curve, plot_real_vs_generated_umap
from exprflow.plotting.perturbation import plot_lfc

__all__ = ["plot_lfc", "plot_loss_curve", "plot_real_vs_generated_umap"]
