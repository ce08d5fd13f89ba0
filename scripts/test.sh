#!/usr/bin/env bash
# The whole test suite, from a fresh machine: virtual environments, the collector build,
# Prometheus, then pytest in the main environment (mcp 2.x) and in one pinned to mcp 1.x.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cc >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  step "C compiler (for the optional span encoder, platform_otel._speedups)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null) \
    || echo "no C compiler: the pure-Python encoder is tested alone" >&2
fi

step "virtual environment .venv (mcp 2.x)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv || exit 1
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]' || exit 1

step "virtual environment .venv-mcp1 (mcp 1.x)"
[ -x .venv-mcp1/bin/python ] || "$PY" -m venv .venv-mcp1 || exit 1
.venv-mcp1/bin/python -m pip install -q --upgrade pip >/dev/null
.venv-mcp1/bin/python -m pip install -q -e '.[dev]' 'mcp>=1.9,<2' || exit 1

if [ -x collector/build.sh ] && [ -z "${PLATFORM_OTEL_SKIP_COLLECTOR:-}" ]; then
  step "collector distribution (cached by manifest hash)"
  if bin=$(collector/build.sh | tail -n 1) && [ -x "$bin" ]; then
    export PLATFORM_OTEL_OTELCOL="$bin"
  else
    echo "collector build failed" >&2; exit 1
  fi
fi

if [ -x scripts/build_ollama.sh ] && [ -z "${PLATFORM_OTEL_SKIP_OLLAMA:-}" ]; then
  step "Ollama server for tests/test_ollama_real.py (built from its Go module, cached by version)"
  if bin=$(scripts/build_ollama.sh | tail -n 1) && [ -x "$bin" ]; then
    export PLATFORM_OTEL_OLLAMA="$bin"
  else
    echo "Ollama build failed (PLATFORM_OTEL_SKIP_OLLAMA=1 skips the real-server tests)" >&2; exit 1
  fi
fi

if ! command -v prometheus >/dev/null 2>&1 && [ -z "${PLATFORM_OTEL_SKIP_PROMETHEUS:-}" ]; then
  step "Prometheus (Debian package)"
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
      || { echo "could not install prometheus" >&2; exit 1; }
  fi
fi

# With a compiler the C encoder must have been built (tests/test_speedups.py compares it with Python).
if command -v cc >/dev/null 2>&1; then export PLATFORM_OTEL_REQUIRE_SPEEDUPS=1; fi
status=0
step "pytest (mcp 2.x)"
.venv/bin/python -m pytest "$@" || status=1
step "pytest (mcp 1.x): MCP tests and the example that uses MCP"
.venv-mcp1/bin/python -m pytest tests/test_mcp.py tests/test_doc_pipeline_example.py tests/test_telemetry_names.py -p no:cacheprovider || status=1
exit $status
