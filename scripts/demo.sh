#!/usr/bin/env bash
# The demo, from a fresh machine: install the package, run the document pipeline example
# (FastAPI service -> queue -> worker -> MCP tool server) and print the telemetry it produced.
# Arguments go to run_demo.py: `bash scripts/demo.sh --stack` also runs the collector,
# Prometheus and Jaeger as local processes and prints what to open in a browser (docs/demo.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[all,redis]' uvicorn httpx pyyaml
exec .venv/bin/python examples/doc_pipeline/run_demo.py "$@"
