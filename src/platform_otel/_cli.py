"""``platform-otel``: run a program instrumented, or diagnose the configuration.

``platform-otel run -- CMD ...`` works like ``opentelemetry-instrument``: it puts a
bootstrap ``sitecustomize`` on ``PYTHONPATH`` so every Python process started by
CMD (children too, since they inherit the environment) calls ``init()`` at start.

``platform-otel doctor`` prints the effective configuration, every integration's
state, and whether each OTLP endpoint accepts connections. It exits 1 when an
endpoint is unreachable or the configuration has problems, so scripts can use it.

``platform-otel monitor`` runs until SIGTERM/SIGINT, exporting the GPU metrics and
Ollama's ``/api/ps`` residency and up/down over OTLP, for hosts whose Ollama
clients are not Python (docs/gpu.md).
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
    env = dict(os.environ)  # the command's environment; ours is not modified
    path = env.get("PYTHONPATH", "")
    parts = [p for p in path.split(os.pathsep) if p and p != bootstrap]
    env["PYTHONPATH"] = os.pathsep.join([bootstrap, *parts])
    env["PLATFORM_OTEL_BOOTSTRAP"] = "1"
    # gRPC's C core prints INFO lines (e.g. "Got goaway" on every collector restart) to
    # stderr; keep its errors only, unless the user chose (init() cannot: it leaves the
    # process environment alone, and gRPC reads only that).
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        os.execvpe(command[0], list(command), env)
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


def _devices(sampler: Any) -> str:
    """The sampler's devices for a human: ``name id, name id``."""
    return ", ".join(f"{d.attributes.get('hw.name', '?')} {d.hw_id}" for d in sampler.devices)


def _probe_gpu(state: str) -> str:
    """What the gpu integration would find: NVML's devices, or why it would be off."""
    try:
        import pynvml

        from .instrumentation.gpu import Sampler

        sampler = Sampler(pynvml)
        reason = sampler.open()
        if reason:
            return f"inactive: {reason}"
        found = _devices(sampler)
        loaded = f"; NVML loaded from {sampler.loaded_from}" if sampler.loaded_from else ""
        sampler.stop()
        return f"{state}; {len(sampler.devices)} device(s): {found}{loaded}"
    except Exception as exc:
        return f"{state}; NVML probe failed: {exc!r}"


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
            if name == "gpu":
                state = _probe_gpu(state)
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


def _ollama_url(given: str | None) -> str:
    """``--ollama``, else ``OLLAMA_HOST``, read the way the ``ollama`` client reads it.

    ``host`` and ``host:port`` mean http on port 11434 by default; a URL with a scheme and
    no port means port 80 or 443. A listen address (``0.0.0.0``) is connected to locally.
    """
    raw = (given or os.environ.get("OLLAMA_HOST") or "").strip()
    scheme, sep, rest = raw.partition("://")
    port = 11434
    if not sep:
        scheme, rest = "http", raw
    elif scheme in ("http", "https"):
        port = 80 if scheme == "http" else 443
    parsed = urllib.parse.urlsplit(f"{scheme}://{rest}")
    host = parsed.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    path = parsed.path.rstrip("/")
    return f"{scheme}://{host}:{parsed.port or port}{path}"


def _monitor(ollama: str | None, no_ollama: bool, interval: float | None) -> int:
    """GPU metrics and Ollama residency over OTLP until SIGTERM/SIGINT."""
    import signal
    import threading

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    # Installed before init(): its SIGTERM flush handler chains to this one.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    import platform_otel

    telemetry = platform_otel.init(
        service_name=None if os.environ.get("OTEL_SERVICE_NAME") else "platform-otel-monitor",
        instrument=["gpu"],
        gpu_interval=interval,
    )
    from .instrumentation import gpu, status

    sampler = gpu.sampler()
    if sampler is not None:
        names = _devices(sampler)
        gpu_line = f"{len(sampler.devices)} device(s) every {sampler.interval:g} s: {names}"
    else:
        gpu_line = f"off ({status('gpu').reason})"
    poller = None
    if not no_ollama:
        try:
            from ._ollama_ps import ResidencyPoller

            url = _ollama_url(ollama)
            meter = telemetry.meter_provider.get_meter(
                "platform_otel.ollama", platform_otel.__version__
            )
            poller = ResidencyPoller(url, meter, interval_s=max(interval or 5.0, 1.0))
            poller.start()
            ollama_line = f"{url}/api/ps every {poller.interval_s:g} s"
        except Exception as exc:
            ollama_line = f"off ({exc!r})"
    else:
        ollama_line = "off (--no-ollama)"
    settings = telemetry.settings
    # Where the metrics go: the OTLP endpoint only when OTLP is one of the exporters.
    targets = [
        settings.metrics.endpoint if name == "otlp" else name for name in settings.metrics.exporters
    ]
    print(
        f"platform-otel monitor: GPU {gpu_line}; Ollama {ollama_line}; "
        f"metrics to {', '.join(targets) or 'no exporter (OTEL_METRICS_EXPORTER=none)'}"
        f" every {settings.metric_export_interval:g} s",
        file=sys.stderr,
        flush=True,
    )
    if sampler is None and poller is None:
        print("platform-otel monitor: nothing to monitor", file=sys.stderr)
        platform_otel.shutdown()
        return 2
    while not stop.wait(1.0):
        pass
    if poller is not None:
        poller.stop()
    platform_otel.shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="platform-otel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a command with telemetry (like opentelemetry-instrument)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    doctor = sub.add_parser("doctor", help="print configuration, integrations and endpoint health")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    monitor = sub.add_parser(
        "monitor", help="export GPU metrics and Ollama /api/ps residency until stopped"
    )
    monitor.add_argument(
        "--ollama", help="Ollama base URL (default: $OLLAMA_HOST, else http://127.0.0.1:11434)"
    )
    monitor.add_argument("--no-ollama", action="store_true", help="GPU metrics only")
    monitor.add_argument(
        "--interval",
        type=float,
        help="GPU sampling interval in seconds (default: $PLATFORM_OTEL_GPU_INTERVAL, else 1); "
        "/api/ps is polled every max(interval, 1) s, or every 5 s without --interval",
    )
    args = parser.parse_args(argv)
    if args.cmd == "monitor":
        return _monitor(args.ollama, args.no_ollama, args.interval)
    if args.cmd == "run":
        command = list(args.command)
        if command and command[0] == "--":
            command = command[1:]
        return _run(command)
    return _doctor(args.json)


if __name__ == "__main__":
    sys.exit(main())
