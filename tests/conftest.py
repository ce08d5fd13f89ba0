"""Shared test setup: our own bugs raise under test; fixtures from tests/support."""

from __future__ import annotations

import os

os.environ["PLATFORM_OTEL_RAISE_INTERNAL"] = "1"

pytest_plugins = ["tests.support.fixtures"]
