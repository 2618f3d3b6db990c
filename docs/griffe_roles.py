"""Render the Sphinx roles of the docstrings (``:class:`~a.B```) as code spans.

The docstrings cross-reference with reStructuredText roles, which read well
in source and in ``help()``; Markdown has no such syntax, so the API
reference shows ``:class:`~a.B``` as ``B``, ``:mod:`a.b``` as ``a.b`` and
``:meth:`text <target>``` as ``text``, each as code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|mod|func|meth|attr|data|obj|exc|const):`([^`]+)`")


def _code(match: re.Match[str]) -> str:
    text = match.group(1)
    named = re.fullmatch(r"(.+?)\s*<[^>]+>", text)
    if named:
        text = named.group(1)
    elif text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    return f"`{text}`"


class SphinxRoles(griffe.Extension):
    """Rewrite every object's docstring before it is parsed (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
