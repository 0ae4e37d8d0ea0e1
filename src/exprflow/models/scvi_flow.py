"""``LatentFlow.from_scvi``: a rectified flow on the latent space of a user's trained scVI model.

scverse users often have an scVI model already; this trains only the flow on its encoder means (plus
the log library size, as LatentFlow's own state) and samples counts through scVI's decoder
(:mod:`exprflow.representations.scvi_latent`). It is also the benchmark row that exprflow's own count VAE
must match or beat. Example::

    import scvi
    scvi.model.SCVI.setup_anndata(adata)                   # raw counts; no covariates
    vae = scvi.model.SCVI(adata, n_latent=10); vae.train()
    model = LatentFlow.from_scvi(vae, condition_key="cell_type")
    model.train()                                          # the flow only (flow_steps; default 4,000)
    fake = model.generate(conditions={"B": 100})           # counts from scVI's decoder
"""

from __future__ import annotations

from exprflow.errors import ExprflowInputError
from exprflow.representations.scvi_latent import ScviLatent


def from_scvi(cls, scvi_model, condition_key: str | None = None, **config):
    """A ``cls`` (LatentFlow) on ``scvi_model``'s latent space and on the AnnData scVI was trained on.

    Parameters
    ----------
    scvi_model
        A trained ``scvi.model.SCVI`` without covariates.
    condition_key
        ``obs`` column of ``scvi_model.adata`` to generate by (``None``: unconditional).
    **config
        Flow options of :class:`~exprflow.models.latent_flow.LatentFlowConfig` (``backbone``,
        ``backbone_kwargs``, ``flow_optim``, ...); the VAE options come from scVI.
    """
    for key in ("vae", "vae_optim", "library"):
        if key in config:
            raise ExprflowInputError(f"from_scvi: {key} is set by the scVI model (its latent space and decoder, "
                                     "the library size as a flow coordinate); leave it out.")
    if config.get("posterior_draws"):
        raise ExprflowInputError("from_scvi: the flow learns scVI's encoder means; posterior_draws is an option of "
                                 "exprflow's own VAE (LatentFlow(adata, posterior_draws=...)).")
    representation = ScviLatent(scvi_model)
    registry = scvi_model.adata_manager.data_registry["X"]
    layer = registry.attr_key if registry.attr_name == "layers" else None
    likelihood = getattr(scvi_model.module, "gene_likelihood", "nb")
    model = cls.__new__(cls)
    model._scvi = representation
    cls.__init__(model, scvi_model.adata, layer=layer, condition_key=condition_key, library="flow",
                 vae={"n_latent": representation.n_latent,
                      "likelihood": likelihood if likelihood in ("nb", "zinb", "poisson") else "nb"}, **config)
    return model
