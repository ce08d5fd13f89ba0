"""Shared test setup: our own bugs raise under test; fixtures from tests/support."""

from __future__ import annotations

import os

os.environ["PLATFORM_OTEL_RAISE_INTERNAL"] = "1"

pytest_plugins = ["tests.support.fixtures"]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fast_path_as_after_init():
    """Integrations instrumented directly (without init()) see the fast path as init() sets it."""
    from platform_otel import _fast

    _fast.enable()
    yield
    _fast.reset()
