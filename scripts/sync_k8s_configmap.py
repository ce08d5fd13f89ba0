#!/usr/bin/env python3
"""Copy collector/config.yaml into the ConfigMap of collector/k8s/sidecar.yaml.

The Kubernetes manifest carries the sidecar's configuration inline, so that
``kubectl apply -f collector/k8s/sidecar.yaml`` is all it takes; this keeps that copy
equal to the real file (tests/test_k8s_manifest.py fails when they differ).

    python scripts/sync_k8s_configmap.py           # rewrite the ConfigMap in place
    python scripts/sync_k8s_configmap.py --check   # exit 1 when it is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "collector" / "config.yaml"
MANIFEST = ROOT / "collector" / "k8s" / "sidecar.yaml"

_HEAD = """apiVersion: v1
kind: ConfigMap
metadata:
  name: otelcol-platform
  labels:
    app.kubernetes.io/name: doc-pipeline
    app.kubernetes.io/component: otel-collector
data:
  config.yaml: |
"""


def configmap(config: str) -> str:
    """The ConfigMap document holding ``config`` as ``config.yaml`` (a literal block)."""
    body = "".join(("    " + line) if line.strip() else "\n" for line in config.splitlines(True))
    return (_HEAD + body).rstrip("\n")


def synced(manifest: str, config: str) -> str:
    """``manifest`` with its ConfigMap document replaced by one holding ``config``."""
    docs = manifest.split("\n---\n")
    index = [i for i, doc in enumerate(docs) if "\nkind: ConfigMap\n" in "\n" + doc]
    if len(index) != 1:
        raise SystemExit(f"{MANIFEST}: expected one ConfigMap document, found {len(index)}")
    docs[index[0]] = configmap(config)
    return "\n---\n".join(docs)


def main(argv: list[str]) -> int:
    manifest = MANIFEST.read_text()
    new = synced(manifest, CONFIG.read_text())
    if "--check" in argv:
        if new != manifest:
            print(f"{MANIFEST.relative_to(ROOT)} is out of date: run {Path(__file__).name}")
            return 1
        return 0
    if new != manifest:
        MANIFEST.write_text(new)
        print(f"updated {MANIFEST.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
