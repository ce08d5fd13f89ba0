"""The package surface: cheap import, no optional library imported, typed public API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import platform_otel


def _fresh(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_import_does_not_import_optional_libraries_or_start_threads() -> None:
    """import platform_otel imports no fastapi/mcp/ollama/pynvml/grpc and starts no thread."""
    out = _fresh(
        "import sys, threading, json; import platform_otel;"
        "print(json.dumps({'mods': sorted(m for m in ('fastapi','starlette','mcp','ollama','pynvml','grpc',"
        "'httpx','requests','opentelemetry.sdk') if m in sys.modules), 'threads': threading.active_count()}))"
    )
    result = json.loads(out)
    assert result == {"mods": [], "threads": 1}


def test_init_defers_integration_libraries_until_the_app_imports_them() -> None:
    """init() does not import fastapi or mcp; importing them later enables their integration."""
    out = _fresh(
        "import sys, json, platform_otel;"
        "t = platform_otel.init(service_name='x', exporters={'traces':['none'],'metrics':['none'],'logs':['none']});"
        "before = [m for m in ('fastapi','mcp','grpc') if m in sys.modules];"
        "import fastapi;"
        "from platform_otel.instrumentation import status;"
        "print(json.dumps({'before': before, 'fastapi': status('fastapi').reason}))"
    )
    result = json.loads(out)
    assert result["before"] == []
    assert result["fastapi"] == "active"


def test_public_surface_is_small_and_typed() -> None:
    """__all__ lists the public names, each importable; the package ships py.typed."""
    for name in platform_otel.__all__:
        assert getattr(platform_otel, name) is not None
    assert (Path(platform_otel.__file__).parent / "py.typed").exists()
    assert set(platform_otel.__all__) >= {
        "init",
        "shutdown",
        "pipeline",
        "Telemetry",
        "ConfigError",
    }
