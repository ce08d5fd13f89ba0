"""A real Ollama server for the tests: the binary from scripts/build_ollama.sh and a tiny model.

``PLATFORM_OTEL_OLLAMA`` names the server binary (scripts/test.sh builds it and
exports the variable). :func:`serve_real_ollama` (wrapped in a session fixture) starts
``ollama serve`` on a free 127.0.0.1 port with a temporary ``OLLAMA_MODELS`` and
``HOME``, writes the random-weight GGUF model (tests/support/tiny_gguf.py) and
registers it as ``tiny`` with ``ollama create``. Tests that use it are skipped,
with the reason, when the variable is unset or the binary is missing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fixtures import Server, free_port, start_process, wait_http
from tests.support.tiny_gguf import write_tiny_llama

__all__ = ["MODEL", "RealOllama", "ollama_binary", "serve_real_ollama"]

MODEL = "tiny"


@dataclass
class RealOllama:
    url: str
    port: int
    binary: str
    server: Server
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the ``ollama`` CLI against this server."""
        return subprocess.run(
            [self.binary, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )


def ollama_binary() -> str:
    """The server binary from ``PLATFORM_OTEL_OLLAMA``; skips the test when there is none."""
    binary = os.environ.get("PLATFORM_OTEL_OLLAMA", "")
    if not binary:
        pytest.skip(
            "PLATFORM_OTEL_OLLAMA is not set: build a real Ollama with scripts/build_ollama.sh "
            "and export its path (scripts/test.sh does both)"
        )
    if not os.access(binary, os.X_OK):
        pytest.skip(f"PLATFORM_OTEL_OLLAMA={binary} is not an executable file")
    return binary


@contextlib.contextmanager
def serve_real_ollama(root: Path) -> Iterator[RealOllama]:
    """``ollama serve`` (real, CPU only) under ``root`` with the tiny model registered as ``tiny``.

    Test modules wrap it in a session-scoped fixture (``real_ollama``).
    """
    binary = ollama_binary()
    (root / "models").mkdir()
    (root / "home").mkdir()
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(root / "home"),
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(root / "models"),
        "OLLAMA_NOPRUNE": "1",
        "OLLAMA_KEEP_ALIVE": "5m",
    }
    with start_process([binary, "serve"], env=env, cwd=root) as server:
        wait_http(f"http://127.0.0.1:{port}/api/version", server, timeout=30)
        write_tiny_llama(root / "tiny.gguf")
        (root / "Modelfile").write_text("FROM ./tiny.gguf\nPARAMETER num_ctx 256\n")
        created = subprocess.run(
            [binary, "create", MODEL, "-f", "Modelfile"],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert created.returncode == 0, f"ollama create failed:\n{created.stderr}\n{server}"
        try:
            yield RealOllama(f"http://127.0.0.1:{port}", port, binary, server, env)
        finally:  # kept with pytest's temporary directories, for a failure's post-mortem
            (root / "serve.log").write_text(server.output)
