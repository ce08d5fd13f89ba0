"""MkDocs hook for the docs site (mkdocs.yml ``hooks:``).

The package's docstrings use Sphinx roles (``:func:`pipeline```), which Markdown
renders as the role's text followed by code. The API page shows them as plain code.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj):(<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(r"\1", html)
