"""User-facing text names methods and papers, never the project's internal tracker or design notes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERNAL = re.compile(r"[Ii]ssue [0-9]+|seed'?s? Option [A-D]|EVALUATION\.md|DESIGN\.md|SEED\.md")


def test_docs_and_sources_have_no_internal_references():
    files = [*ROOT.joinpath("src").rglob("*.py"), *ROOT.joinpath("docs").rglob("*.md"),
             *ROOT.joinpath("docs").rglob("*.py")]
    hits = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
            for path in files for n, line in enumerate(path.read_text().splitlines(), 1) if INTERNAL.search(line)]
    assert not hits, "internal references in user-facing text:\n" + "\n".join(hits)


def test_every_docs_page_is_in_the_site_navigation():
    nav = ROOT.joinpath("mkdocs.yml").read_text()
    pages = {str(p.relative_to(ROOT / "docs")) for p in ROOT.joinpath("docs").rglob("*.md")}
    missing = sorted(p for p in pages if p not in nav)
    assert not missing, f"pages missing from mkdocs.yml's nav: {missing}"
