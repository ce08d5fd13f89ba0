"""Build hook for the optional C span encoder; all metadata lives in pyproject.toml.

``platform_otel._fast._encode`` is compiled when a C compiler and Python headers are
available. ``optional=True``: without them the install still succeeds and the Python
encoder is used (same bytes, more CPU per span; docs/performance.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "platform_otel._fast._encode",
            sources=["src/platform_otel/_fast/_encode.c"],
            optional=True,
        ),
    ]
)
