"""``platform-otel``: run a program instrumented, or diagnose the configuration.

``platform-otel run -- CMD ...`` works like ``opentelemetry-instrument``: it puts a
bootstrap ``sitecustomize`` on ``PYTHONPATH`` so every Python process started by
CMD (children too, since they inherit the environment) calls ``init()`` at start.

``platform-otel doctor`` prints the effective configuration, every integration's
state, and whether each OTLP endpoint accepts connections. It exits 1 when an
endpoint is unreachable or the configuration has problems, so scripts can use it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import sys
import urllib.parse
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _run(command: Sequence[str]) -> int:
    if not command:
        print(
            "platform-otel run: give a command, e.g. platform-otel run -- uvicorn app:app",
            file=sys.stderr,
        )
        return 2
    bootstrap = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")
    env = os.environ
    path = env.get("PYTHONPATH", "")
    parts = [p for p in path.split(os.pathsep) if p and p != bootstrap]
    env["PYTHONPATH"] = os.pathsep.join([bootstrap, *parts])
    env["PLATFORM_OTEL_BOOTSTRAP"] = "1"
    try:
        os.execvp(command[0], list(command))
    except OSError as exc:
        print(f"platform-otel run: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached


def _reachable(url: str, timeout: float = 1.0) -> tuple[bool, str]:
    parsed = urllib.parse.urlparse(url)
    host = parsed.hostname or "localhost"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"{host}:{port} accepts connections"
    except OSError as exc:
        return False, f"{host}:{port} unreachable ({exc.strerror or exc})"


def _doctor(as_json: bool) -> int:
    from ._config import load_settings
    from .instrumentation import REGISTRY

    settings = load_settings()
    integrations = []
    for name, (module_name, library, _deferred) in REGISTRY.items():
        installed = importlib.util.find_spec(library) is not None
        if name not in settings.integrations:
            state = (
                "disabled by configuration"
                if name in settings.disabled_integrations
                else "not requested"
            )
        elif not installed:
            state = (
                f"inactive: library {library!r} not installed (pip install 'platform-otel[{name}]')"
            )
        elif importlib.util.find_spec(f"platform_otel.instrumentation.{module_name}") is None:
            state = "inactive: not implemented in this version"
        else:
            version = ""
            try:
                from importlib.metadata import version as dist_version

                version = " " + dist_version({"pynvml": "nvidia-ml-py"}.get(library, library))
            except Exception:
                pass
            state = f"will be enabled ({library}{version} installed)"
        integrations.append({"name": name, "state": state})
    from .instrumentation._entry_points import plan

    contrib = [
        {
            "name": p.name,
            "package": p.distribution,
            "state": f"will be enabled ({p.reason})"
            if p.action == "enable"
            else f"skipped: {p.reason}",
        }
        for p in plan(settings.disabled_integrations, describe=True)
    ]
    endpoints = []
    healthy = not settings.problems
    for signal in ("traces", "metrics", "logs"):
        cfg = getattr(settings, signal)
        if "otlp" not in cfg.exporters:
            endpoints.append(
                {
                    "signal": signal,
                    "endpoint": None,
                    "ok": True,
                    "detail": f"exporters: {list(cfg.exporters)}",
                }
            )
            continue
        ok, detail = _reachable(cfg.endpoint)
        healthy &= ok
        endpoints.append(
            {
                "signal": signal,
                "endpoint": cfg.endpoint,
                "protocol": cfg.protocol,
                "ok": ok,
                "detail": detail,
            }
        )
    from . import _fast

    request_path = _fast.describe(settings.otlp_encoder)
    report: dict[str, Any] = {
        "request_path": request_path,
        "settings": settings.as_dict(),
        "problems": [str(p) for p in settings.problems],
        "integrations": integrations,
        "instrumentations": contrib,
        "endpoints": endpoints,
        "healthy": healthy,
    }
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return 0 if healthy else 1
    print("platform-otel doctor\n\nConfiguration (argument > environment > default):")
    for key, value in report["settings"].items():
        print(f"  {key}: {value}")
    print("\nProblems:" if settings.problems else "\nProblems: none")
    for p in report["problems"]:
        print(f"  ! {p}")
    print(f"\nRequest path: {request_path}")
    print("\nIntegrations:")
    for item in integrations:
        print(f"  {item['name']:<9} {item['state']}")
    print("\nInstalled OpenTelemetry instrumentations (opentelemetry_instrumentor entry points):")
    for item in contrib:
        print(f"  {item['name']:<12} {item['state']}  [{item['package']}]")
    if not contrib:
        print("  none")
    print("\nOTLP endpoints:")
    for e in endpoints:
        mark = "ok " if e["ok"] else "ERR"
        print(f"  [{mark}] {e['signal']:<8} {e['endpoint'] or '-'}  {e['detail']}")
    print("\nResult:", "healthy" if healthy else "problems found")
    return 0 if healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="platform-otel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a command with telemetry (like opentelemetry-instrument)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    doctor = sub.add_parser("doctor", help="print configuration, integrations and endpoint health")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        command = list(args.command)
        if command and command[0] == "--":
            command = command[1:]
        return _run(command)
    return _doctor(args.json)


if __name__ == "__main__":
    sys.exit(main())
