"""Figures people would rather look at than read: UMAPs of real vs generated, loss curves."""

from exprflow.plotting.figures import plot_loss_curve, plot_real_vs_generated_umap

__all__ = ["plot_loss_curve", "plot_real_vs_generated_umap"]
