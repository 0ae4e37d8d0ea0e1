"""exprflow: generative modelling of single-cell gene expression.

The representation follows the data's structure (see ``docs/architecture.md``)::

    data -> representation -> backbone -> objective -> sampler -> evaluation
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
