"""Loaded by Python at start-up in processes launched by ``platform-otel run``.

It calls ``platform_otel.init()`` (configured by the inherited ``OTEL_*`` and
``PLATFORM_OTEL_*`` variables), then hands over to any other ``sitecustomize``
further down ``sys.path`` so the environment's own customisation still runs.
"""

import importlib
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))


def _chain() -> None:
    saved = sys.path[:]
    me = sys.modules.get("sitecustomize")
    try:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
        sys.modules.pop("sitecustomize", None)
        importlib.import_module("sitecustomize")
    except ImportError:
        pass
    finally:
        sys.path[:] = saved
        if "sitecustomize" not in sys.modules and me is not None:
            sys.modules["sitecustomize"] = me  # the import system expects the module it is loading


if os.environ.get("PLATFORM_OTEL_BOOTSTRAP") == "1":
    try:
        import platform_otel

        platform_otel.init()
    except Exception as exc:  # never stop the program from starting
        sys.stderr.write(f"platform-otel: automatic init() failed: {exc!r}\n")
_chain()
