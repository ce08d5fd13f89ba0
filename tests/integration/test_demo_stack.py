"""``run_demo.py --stack`` as a user runs it: real collector, Prometheus, Jaeger and Chromium.

One run of the demo with ``--stack`` (no ``--hold``: it waits for Ctrl-C). While it
holds the stack, the test opens every URL it printed: each answers; the trace it
printed is the one Jaeger's API returns, joined across the service and the MCP
converter; each Prometheus graph page, loaded in headless Chromium (Debian's
package), plots at least one series (:func:`plotted_series`, which finds none on a
page whose query has no data: checked on such a page too). Then SIGINT, as Ctrl-C
sends: the demo exits 0, its processes are gone and its folder is removed.

With ``PLATFORM_OTEL_SCREENSHOTS_DIR`` set, the same run saves a PNG of each graph page
there (docs/images/ holds a set: docs/demo.md).

Skipped only when Chromium, the collector, Prometheus or Jaeger is missing
(``scripts/test.sh`` installs or builds all four).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.support.demo_stack import EXAMPLE
from tests.support.demo_stack import stack as stack_module
from tests.support.fixtures import child_env, http_get

pytestmark = pytest.mark.integration

BINARY_VARIABLES = (
    "PLATFORM_OTEL_OTELCOL",
    "PLATFORM_OTEL_JAEGER",
    "PLATFORM_OTEL_PROMETHEUS",
    "PLATFORM_OTEL_CACHE_DIR",
)
URL = re.compile(r"^\s+(http://127\.0\.0\.1:\d+/\S+)$")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("chromium not installed: apt-get install -y chromium")
    return found


def _browser(binary: str, url: str, *mode: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``url``; ``--virtual-time-budget`` lets the page's scripts finish."""
    argv = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"]
    argv += ["--virtual-time-budget=8000", *mode, url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


class _GraphPage(HTMLParser):
    """The classic Prometheus graph page as rendered: legend labels and drawn series paths."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[str] = []
        self.drawn_paths = 0
        self._in_label = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        # Rickshaw draws each series as <path class="path" d="M..L..">; one point is "M..Z".
        if tag == "path" and "path" in classes and "L" in (a.get("d") or ""):
            self.drawn_paths += 1
        self._in_label = tag == "span" and "label" in classes

    def handle_data(self, data: str) -> None:
        if self._in_label:
            self.labels.append(data)
            self._in_label = False


def plotted_series(dom: str) -> list[str]:
    """The legend's series labels when the page plotted at least one line, else []."""
    page = _GraphPage()
    page.feed(dom)
    return page.labels if page.drawn_paths and page.labels else []


def _descendants(pid: int) -> dict[int, str]:
    """Every live process below ``pid`` (new sessions included), with its command name."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        fields = rest.split()
        if fields[0] == "Z":
            continue
        names[int(entry.name)] = name
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        out[child] = names[child]
        todo += children.get(child, [])
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class _Demo:
    """The demo process, its stdout read line by line in a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLE / "run_demo.py"), "--stack", "--timeout", "40"],
            env=child_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # the test's own process group never gets the SIGINT
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, f"demo exited {self.proc.returncode}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout}s:\n{self.output}"
            time.sleep(0.2)

    def kill(self) -> None:
        """After a failure: the demo and everything it started, each in its own group."""
        below = _descendants(self.proc.pid) if self.proc.poll() is None else {}
        for pid in [self.proc.pid, *below]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.proc.wait(5)


@pytest.fixture
def demo() -> Iterator[_Demo]:
    browser = chromium()
    missing = {
        "collector (bash collector/build.sh)": stack_module.otelcol_binary(),
        "Jaeger (bash collector/jaeger/build.sh)": stack_module.jaeger_binary(),
        "Prometheus (apt-get install -y prometheus)": stack_module.prometheus_binary(),
    }
    for what, found in missing.items():
        if found is None:
            pytest.skip(f"{what} not available")
    pytest.importorskip("fastapi")
    pytest.importorskip("yaml")
    env = {k: os.environ[k] for k in BINARY_VARIABLES if k in os.environ}
    run = _Demo(env)
    run.browser = browser  # type: ignore[attr-defined]
    try:
        yield run
    finally:
        run.kill()


def _section(lines: list[str], start: str) -> list[str]:
    """The lines after the one containing ``start`` up to the next blank line."""
    index = next(i for i, line in enumerate(lines) if start in line)
    out = []
    for line in lines[index + 1 :]:
        if not line.strip():
            break
        out.append(line)
    return out


def _tree(lines: list[str]) -> list[tuple[str, str, list[str]]]:
    """(name, kind and service, names of its ancestors) for each line of a printed tree."""
    out = []
    stack: list[tuple[int, str]] = []
    for line in lines:
        match = re.match(r"^( +)(.+?)  \[(\w+), ([\w-]+),", line)
        assert match, line
        depth = len(match.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        out.append((match.group(2), f"{match.group(3)} {match.group(4)}", [n for _, n in stack]))
        stack.append((depth, match.group(2)))
    return out


def test_demo_stack_serves_graphs_and_the_trace_then_stops_on_ctrl_c(demo: _Demo) -> None:
    demo.wait_for("press Ctrl-C to stop", timeout=50)
    lines = demo.lines
    assert "skipped:" not in demo.output, demo.output
    workdir = Path(re.search(r"files in (\S+)\)", demo.output).group(1))  # type: ignore[union-attr]
    assert workdir.is_dir()

    # Every printed URL answers.
    urls = [m.group(1) for line in lines if (m := URL.match(line))]
    graphs = [u for u in urls if "/classic/graph?" in u]
    traces = [u for u in urls if "/api/traces/" in u]
    assert len(graphs) == 5 and len(traces) == 1, demo.output
    for url in urls:
        assert http_get(url, timeout=10)[0] == 200, url

    # The printed tree is the trace as Jaeger's API has it, joined across both services.
    trace_id = traces[0].rsplit("/", 1)[1]
    header = next(line for line in lines if "read back from Jaeger" in line)
    assert trace_id in header
    tree = _tree(_section(lines, "read back from Jaeger"))
    stored = json.loads(http_get(traces[0], timeout=10)[1])["data"][0]["spans"]
    assert sorted(name for name, _, _ in tree) == sorted(s["operationName"] for s in stored)
    assert f"read back from Jaeger: {len(stored)} spans" in header

    def one(pred: str, kind: str) -> tuple[str, list[str]]:
        found = [(n, up) for n, k, up in tree if re.fullmatch(pred, n) and k == kind]
        assert len(found) == 1, (pred, kind, tree)
        return found[0]

    http, _ = one(r"POST /documents", "server doc-pipeline")
    stage, up_stage = one(r"document-ingest convert", "consumer doc-pipeline")
    client, up_client = one(r".*tools/call convert_document", "client doc-pipeline")
    _, up_server = one(r"tools/call convert_document", "server doc-converter")
    assert http in up_stage and stage in up_client and up_server[-1] == client, tree

    # Each graph page plots its series in a real browser; a query without data plots none.
    shots = os.environ.get("PLATFORM_OTEL_SCREENSHOTS_DIR")
    browser: str = demo.browser  # type: ignore[attr-defined]
    for index, url in enumerate(graphs):
        page = _browser(browser, url, "--dump-dom")
        assert page.returncode == 0, page.stderr
        series = plotted_series(page.stdout)
        expr = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["g0.expr"][0]
        assert series, f"no series plotted for {expr}"
        if shots:
            name = ("throughput", "failures", "stage-p95", "http-rate", "http-p95")[index]
            Path(shots).mkdir(parents=True, exist_ok=True)
            png = Path(shots) / f"demo-prometheus-{name}.png"
            # Zoomed to the last minute (the page's "-" button), where the run's data is.
            zoomed = url.replace("g0.range_input=5m", "g0.range_input=1m")
            shot = _browser(browser, zoomed, f"--screenshot={png}")
            assert shot.returncode == 0 and png.stat().st_size > 10_000, shot.stderr
    empty = graphs[0].replace("pipeline_items_total", "pipeline_items_total_nothing_here")
    page = _browser(browser, empty, "--dump-dom")
    assert page.returncode == 0 and "No datapoints found." in page.stdout
    assert plotted_series(page.stdout) == []

    # Ctrl-C: everything stops, exit 0, nothing left behind.
    children = _descendants(demo.proc.pid)
    assert {"prometheus", "jaeger"} <= set(children.values()), children
    assert any(name.startswith("otelcol") for name in children.values()), children
    started = time.monotonic()
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(30) == 0, demo.output
    stop_seconds = time.monotonic() - started
    left = [f"{pid} {name}" for pid, name in children.items() if _alive(pid)]
    assert not left, f"left running after Ctrl-C: {left}"
    assert not workdir.exists()
    assert any(line.startswith("stopped: ") for line in demo.lines[-3:]), demo.output
    assert stop_seconds < 15, stop_seconds


def test_stack_without_jaeger_still_runs_the_collector_and_prometheus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A component that is not built is skipped with a note saying how to build it."""
    if stack_module.otelcol_binary() is None or stack_module.prometheus_binary() is None:
        pytest.skip("needs the collector (bash collector/build.sh) and Prometheus")
    pytest.importorskip("yaml")
    monkeypatch.setenv("PLATFORM_OTEL_JAEGER", "/nonexistent/jaeger")
    stack = stack_module.Stack("http://127.0.0.1:9")
    try:
        stack.start()
        assert [p.name for p in stack.processes] == ["collector", "prometheus"]
        assert stack.jaeger_url is None and stack.otlp_endpoint and stack.prometheus_url
        assert len(stack.notes) == 1 and "bash collector/jaeger/build.sh" in stack.notes[0]
        assert http_get(f"{stack.prometheus_url}/classic/targets")[0] == 200
        pids = [p.proc.pid for p in stack.processes]
        workdir = stack.workdir
    finally:
        stopped = stack.stop()
    assert stopped == ["collector", "prometheus"]
    assert not any(_alive(pid) for pid in pids) and workdir and not workdir.exists()


def test_stack_with_a_wrong_prometheus_path_skips_prometheus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``PLATFORM_OTEL_PROMETHEUS`` naming no program: a note, not a traceback."""
    if stack_module.otelcol_binary() is None or stack_module.jaeger_binary() is None:
        pytest.skip("needs the collector (bash collector/build.sh) and Jaeger")
    pytest.importorskip("yaml")
    monkeypatch.setenv("PLATFORM_OTEL_PROMETHEUS", "/nonexistent/prometheus")
    stack = stack_module.Stack("http://127.0.0.1:9")
    try:
        stack.start()
        assert [p.name for p in stack.processes] == ["jaeger", "collector"]
        assert stack.prometheus_url is None and stack.jaeger_url and stack.otlp_endpoint
        assert len(stack.notes) == 1 and "apt-get install prometheus" in stack.notes[0]
        assert "/nonexistent/prometheus" in stack.notes[0]
        pids = [p.proc.pid for p in stack.processes]
        workdir = stack.workdir
    finally:
        stopped = stack.stop()
    assert stopped == ["collector", "jaeger"]
    assert not any(_alive(pid) for pid in pids) and workdir and not workdir.exists()


def test_demo_without_the_collector_runs_as_before_and_says_how_to_build_it() -> None:
    """No collector: a note naming collector/build.sh, no stack, the demo's own view as usual."""
    pytest.importorskip("fastapi")
    env = {"PLATFORM_OTEL_OTELCOL": "/nonexistent/otelcol-platform"}
    proc = subprocess.run(
        # No --hold: with nothing running the demo exits by itself, without waiting for Ctrl-C.
        [sys.executable, str(EXAMPLE / "run_demo.py"), "--stack", "--rounds", "1"],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped: collector: not built" in proc.stdout
    assert "bash collector/build.sh" in proc.stdout
    assert "running: nothing" in proc.stdout
    assert "all documents traced end to end; metrics and logs received" in proc.stdout
    assert "/classic/graph" not in proc.stdout and "/api/traces/" not in proc.stdout
    assert "the stack: nothing to open in a browser" in proc.stdout
    assert "keeps running" not in proc.stdout
