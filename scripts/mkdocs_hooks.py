"""MkDocs hooks for the docs site (mkdocs.yml ``hooks:``).

The pages are written for GitHub as well as for the site, and two habits render
differently in Python-Markdown:

- a list that starts right after a paragraph line, with no blank line between them
  (GitHub renders a list, Python-Markdown one run-on paragraph): a blank line is added;
- the package's docstrings use reStructuredText: Sphinx roles (``:func:`pipeline```),
  which Markdown renders as the role's text followed by code, and ``::`` before a
  literal block. The API page shows the roles as plain code and ``::`` as one colon.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj):(<code>)")
_LITERAL_MARKER = re.compile(r"::</p>")
_LIST_ITEM = re.compile(r"^(?:[-*+]|\d+\.) ")
_FENCE = re.compile(r"^\s*(```|~~~)")


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    out: list[str] = []
    fenced = False
    previous = ""
    for line in markdown.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        elif (
            not fenced
            and _LIST_ITEM.match(line)
            and previous.strip()
            and not _LIST_ITEM.match(previous)
            and not previous.startswith((" ", "\t", "|", "#", ">"))
        ):
            out.append("")
        out.append(line)
        previous = line
    return "\n".join(out)


def on_page_content(html: str, **kwargs: Any) -> str:
    return _LITERAL_MARKER.sub(":</p>", _ROLE.sub(r"\1", html))
