"""``examples/doc_pipeline/_stack.py`` for the tests: one place that knows where the
collector, Jaeger and Prometheus binaries are and how their configs move to free ports.

The demo (``run_demo.py --stack``) and the stack tests start the same components the
same way; the tests import the example's module rather than keep a copy of it.
"""

from __future__ import annotations

import sys
from types import ModuleType

from tests.support.fixtures import REPO_ROOT

__all__ = ["EXAMPLE", "stack"]

EXAMPLE = REPO_ROOT / "examples" / "doc_pipeline"


def _load() -> ModuleType:
    sys.path.insert(0, str(EXAMPLE))  # _stack imports its neighbour _collector
    try:
        import _stack
    finally:
        sys.path.remove(str(EXAMPLE))
    return _stack


stack = _load()
