"""Synthetic data for the metrics tests: the shared generator of ``tests/synthetic.py`` under its local name."""

from __future__ import annotations

from synthetic import make_counts_adata as make_counts

__all__ = ["make_counts"]
