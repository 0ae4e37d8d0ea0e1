"""Fixtures of the backbone tests (the helpers live in tests/backbone_helpers.py)."""

from backbone_helpers import make_backbone  # noqa: F401  (fixture)
