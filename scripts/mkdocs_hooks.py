"""MkDocs hook for the docs site (mkdocs.yml ``hooks:``).

The package's docstrings are written in reStructuredText habits: Sphinx roles
(``:func:`pipeline```), which Markdown renders as the role's text followed by code,
and ``::`` before a literal block. The API page shows the roles as plain code and the
``::`` as one colon.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj):(<code>)")
_LITERAL_MARKER = re.compile(r"::</p>")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _LITERAL_MARKER.sub(":</p>", _ROLE.sub(r"\1", html))
