"""Process lifecycle: SIGTERM flush, idempotent init, disabled SDK."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SIGTERM_APP = textwrap.dedent(
    """
    import os, signal, time
    import platform_otel
    platform_otel.init(service_name="s", exporters={"traces": ["console"], "metrics": ["none"], "logs": ["none"]})
    from opentelemetry import trace
    with trace.get_tracer("x").start_as_current_span("before-sigterm"):
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    print("NOT-REACHED")
    """
)


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PLATFORM_OTEL_"))
    }
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=full_env
    )


def test_sigterm_flushes_buffered_spans_and_still_terminates() -> None:
    """A process stopped by SIGTERM exports what it buffered, then dies by the signal as before."""
    result = _run(SIGTERM_APP)
    assert '"name": "before-sigterm"' in result.stdout, result.stderr
    assert "NOT-REACHED" not in result.stdout
    assert result.returncode == -15


def test_sigterm_chains_to_the_application_handler() -> None:
    """An application SIGTERM handler installed before init() still runs after our flush."""
    code = SIGTERM_APP.replace(
        "import platform_otel\n",
        "import platform_otel, sys\nsignal.signal(signal.SIGTERM, lambda *a: (print('APP-HANDLER', flush=True), sys.exit(3)))\n",
    )
    result = _run(code)
    assert '"name": "before-sigterm"' in result.stdout
    assert "APP-HANDLER" in result.stdout
    assert result.returncode == 3


def test_second_init_returns_same_handle_and_exports_once() -> None:
    """init() twice (even with other arguments) gives one handle and every span once."""
    code = textwrap.dedent(
        """
        import platform_otel
        ex = {"traces": ["console"], "metrics": ["none"], "logs": ["none"]}
        a = platform_otel.init(service_name="one", exporters=ex)
        b = platform_otel.init(service_name="two", exporters=ex)
        print("SAME", a is b, a.settings.service_name)
        from opentelemetry import trace
        with trace.get_tracer("x").start_as_current_span("only-once"):
            pass
        """
    )
    result = _run(code)
    assert "SAME True one" in result.stdout
    assert result.stdout.count('"name": "only-once"') == 1
    assert result.stderr.count("already called with other arguments") == 1


def test_sdk_disabled_installs_nothing() -> None:
    """OTEL_SDK_DISABLED=true: init() returns a disabled handle and no provider or thread."""
    code = textwrap.dedent(
        """
        import threading, platform_otel
        t = platform_otel.init(service_name="off")
        from opentelemetry import trace
        print("STATE", t.enabled, type(trace.get_tracer_provider()).__name__, threading.active_count())
        """
    )
    result = _run(code, OTEL_SDK_DISABLED="true")
    assert "STATE False ProxyTracerProvider 1" in result.stdout, result.stderr


def test_unloadable_propagators_are_skipped_with_a_warning() -> None:
    """OTEL_PROPAGATORS naming a propagator that is not installed (or unknown) warns; init() and imports still work."""
    code = textwrap.dedent(
        """
        import platform_otel
        platform_otel.init(service_name="p", exporters={"traces": ["none"], "metrics": ["none"], "logs": ["none"]})
        from opentelemetry import propagate, trace
        carrier = {}
        with trace.get_tracer("x").start_as_current_span("s"):
            propagate.inject(carrier)
        print("CARRIER", sorted(carrier))
        """
    )
    result = _run(code, OTEL_PROPAGATORS="tracecontext,b3,bogus")
    assert result.returncode == 0, result.stderr
    assert "CARRIER ['traceparent']" in result.stdout
    assert "OTEL_PROPAGATORS entry 'b3' needs a package that is not installed" in result.stderr
    assert "OTEL_PROPAGATORS='bogus' is invalid" in result.stderr


def test_init_after_shutdown_says_telemetry_stays_off() -> None:
    """init() after shutdown() returns a disabled handle with a warning, instead of silently dropping spans."""
    code = textwrap.dedent(
        """
        import platform_otel
        ex = {"traces": ["console"], "metrics": ["none"], "logs": ["none"]}
        platform_otel.init(service_name="one", exporters=ex)
        platform_otel.shutdown()
        again = platform_otel.init(service_name="two", exporters=ex)
        print("ENABLED", again.enabled, platform_otel.init() is again)
        """
    )
    result = _run(code)
    assert "ENABLED False True" in result.stdout, result.stderr
    assert result.stderr.count("init() after shutdown()") == 1
