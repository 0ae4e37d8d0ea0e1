"""exprflow: generative modelling of single-cell gene expression.

The representation follows the data's structure (see ``docs/architecture.md``)::

    data -> representation -> backbone -> objective -> sampler -> evaluation

Top-level names are imported lazily, so ``import exprflow`` (and ``exprflow --help``) stays fast::

    from exprflow import StateFlow, evaluate, settings
    import exprflow as ef; ef.pl.real_vs_generated(real, generated)    # plotting, scanpy style
    settings.num_threads = 2     # PyTorch threads of exprflow's work (default None: automatic)
"""

from __future__ import annotations

import importlib
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY = {
    "StateFlow": "exprflow.models",
    "LatentFlow": "exprflow.models",
    "PerturbationFlow": "exprflow.models",
    "PathwayFlow": "exprflow.models",
    "PopulationFlow": "exprflow.models",
    "TrajectoryFlow": "exprflow.models",
    "LIKELIHOODS": "exprflow.distributions",
    "MODELS": "exprflow.models",
    "view_anndata_setup": "exprflow.models",
    "NucleotideLM": "exprflow.models.nucleotide_lm",
    "BACKBONES": "exprflow.backbones",
    "evaluate": "exprflow.metrics",
    "format_report": "exprflow.metrics",
    "read_adata": "exprflow.data",
    "prepare_counts": "exprflow.data",
    "settings": "exprflow.threads",
}

__all__ = ["__version__", "pl", *_LAZY]


_MODULES = {"pl": "exprflow.plotting"}


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'exprflow' has no attribute {name!r}")
