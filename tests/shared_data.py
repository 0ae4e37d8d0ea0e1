"""Paths of the real datasets in ../shared/data (importable: ``from shared_data import shared_path``).

A plain module, not a conftest: ``from conftest import ...`` is ambiguous when test folders with their
own conftest.py are collected in one run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(name: str) -> Path:
    """Path of a real dataset in ../shared/data; skips the test if it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real dataset {path} not present")
    return path
