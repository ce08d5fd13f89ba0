"""Build hook for the optional C extensions; all metadata lives in pyproject.toml.

``platform_otel._speedups`` (the span encoder) and ``platform_otel._asgi_speedups``
(the per-request server path) are compiled when a C compiler and Python headers
are available. ``optional=True``: without them the install still succeeds and the
Python code is used (same telemetry, more CPU per request; docs/performance.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "platform_otel._speedups",
            sources=["src/platform_otel/_speedups.c"],
            optional=True,
        ),
        Extension(
            "platform_otel._asgi_speedups",
            sources=["src/platform_otel/_asgi_speedups.c"],
            optional=True,
        ),
    ]
)
