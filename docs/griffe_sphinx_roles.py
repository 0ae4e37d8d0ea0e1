"""Griffe extension for the API reference: reStructuredText idioms in docstrings read cleanly as Markdown.

Sphinx roles (``:func:`x```, ``:class:`~a.B```) become inline code, and the literal-block marker ``::``
ending a paragraph becomes ``:`` (a line holding only ``::`` is dropped); the indented block after it
is already a code block in Markdown. Loaded by mkdocstrings (mkdocs.yml).
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|obj|exc|const):`~?([^`]+)`")
LITERAL = re.compile(r"^([ \t]*)(.*?)::[ \t]*$", re.MULTILINE)


def _literal(match: re.Match) -> str:
    indent, text = match.group(1), match.group(2)
    return f"{indent}{text}:" if text.strip() else ""


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles and ``::`` literal markers in every docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = LITERAL.sub(_literal, ROLE.sub(r"`\1`", obj.docstring.value))
