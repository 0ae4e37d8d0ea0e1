"""Real time-course data for the trajectory tests (importable: ``from timecourse_helpers import ...``).

``conftest.shared_path`` is not imported: ``from conftest import`` is ambiguous when test folders with
their own conftest are collected together.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(name: str) -> Path:
    """A real dataset of ../shared/data; skips the test when it is absent."""
    if not (SHARED_DATA / name).exists():
        pytest.skip(f"real dataset {name} not present")
    return SHARED_DATA / name
