#!/usr/bin/env bash
# The demo, from a fresh machine: install the package, run the document pipeline example
# (FastAPI service -> queue -> worker -> MCP tool server) and print the telemetry it produced.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[all,redis]' uvicorn httpx
exec .venv/bin/python examples/doc_pipeline/run_demo.py "$@"
