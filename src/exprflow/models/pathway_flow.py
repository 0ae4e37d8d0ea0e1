"""``PathwayFlow``: StateFlow whose velocity network reads gene sets (pathways) as tokens.

The same rectified flow on standardised log1p expression as :class:`StateFlow`, with the ``pathway``
backbone (:mod:`exprflow.backbones.pathways`) as default. The gene sets are a GMT path in the backbone
options; ``control="random"`` gives the degree-matched random-set control with the identical model::

    model = PathwayFlow(adata, condition_key="cell_type",
                        backbone_kwargs={"gene_sets": "h.all.v7.5.1.symbols.gmt"})
    model.train(max_steps=2000)
    fake = model.generate(n_cells=500)
    emb = model.get_cell_embedding(adata)          # pooled pathway tokens, (n_obs, hidden)

CLI: ``exprflow fit --model pathway --backbone-kwargs '{"gene_sets": "sets.gmt"}' ...``.
``StateFlow(adata, backbone="pathway", backbone_kwargs=...)`` is the same network.
"""

from __future__ import annotations

from dataclasses import dataclass

from exprflow.models.state_flow import StateFlow, StateFlowConfig


@dataclass(frozen=True)
class PathwayFlowConfig(StateFlowConfig):
    """A :class:`StateFlowConfig` whose default backbone is ``pathway`` (give ``gene_sets`` in backbone_kwargs)."""

    backbone: str = "pathway"


class PathwayFlow(StateFlow):
    """Rectified flow in gene space with pathway tokens; see the module docstring."""

    config_cls = PathwayFlowConfig

    @property
    def gene_set_report(self):
        """The gene sets' :class:`~exprflow.representations.genesets.CoverageReport` (None after load)."""
        return getattr(self.backbone, "coverage_report", None)
