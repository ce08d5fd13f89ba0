"""The docs site builds as a newcomer would build it: ``mkdocs build --strict``.

One build (about 2 s) into a temporary directory, then what a reader would trip over:
a warning of any kind (broken page link or anchor, a missing included file, an API
object mkdocstrings cannot find), a page in ``docs/`` that the navigation does not
reach, an API page that does not show the docstrings, and the dashboards page
drifting from the dashboard files (``test_dashboards_page_*``).

Skipped when the docs tools (the ``docs`` extra) are not installed, as in the
lowest-versions environment.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.fixtures import REPO_ROOT

DOCS = REPO_ROOT / "docs"
DASHBOARDS = REPO_ROOT / "collector" / "grafana" / "dashboards"


def _need_docs_tools() -> None:
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="docs tools not installed: pip install -e '.[docs]'")


def _nav_pages(nav: Any) -> list[str]:
    """Every page file the ``nav`` of mkdocs.yml names, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def _mkdocs_config() -> dict[str, Any]:
    # mkdocs.yml uses no Python tags, so the safe loader reads it.
    config: dict[str, Any] = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())
    return config


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_docs_tools()
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    warnings = [line for line in log.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert proc.returncode == 0 and not warnings, f"mkdocs build --strict failed:\n{log}"
    return out


def _text(page: Path) -> str:
    """The visible text of a built page's article."""
    raw = page.read_text()
    start, end = raw.find("<article"), raw.find("</article>")
    body = raw[start:end] if start >= 0 else raw
    return html.unescape(re.sub(r"<[^>]+>", "", body))


def test_strict_build_has_no_warnings(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "quickstart" / "index.html").is_file()


def test_lists_and_code_blocks_render(site: Path) -> None:
    """No page shows Markdown as text: a list, table, heading or code fence in a paragraph.

    (Python-Markdown needs a blank line before a list, GitHub does not; the site's hook
    adds it. A list item holding a code block needs 4-space continuation lines.)
    """
    broken = []
    for page in sorted(site.rglob("*.html")):
        raw = page.read_text()
        article = raw[raw.find("<article") : raw.find("</article>")]
        for paragraph in re.findall(r"<p>(.*?)</p>", article, re.S):
            if re.search(r"\n\s*(?:[-*+]|\d+\.) |(?:^|\n)\s*\||(?:^|\n)#{1,6} ", paragraph) or (
                "```" in paragraph
            ):
                broken.append(f"{page.relative_to(site)}: {paragraph[:80]!r}")
    assert broken == []


def test_every_page_in_docs_is_in_the_nav() -> None:
    nav = _nav_pages(_mkdocs_config()["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(set(nav)) == sorted(nav), "a page is in the nav twice"
    assert [p for p in pages if p not in nav] == [], "pages the nav does not reach"
    assert [p for p in nav if p not in pages] == [], "nav entries without a page"


def test_readme_links_to_the_docs_resolve() -> None:
    """The README is read on GitHub, outside the site: its relative links must hit files."""
    readme = (REPO_ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    relative = [t for t in targets if "://" not in t and not t.startswith("mailto:")]
    assert relative, "the README links to no page"
    missing = [t for t in relative if not (REPO_ROOT / t).exists()]
    assert missing == [], f"README links to missing files: {missing}"


def test_api_page_renders_the_public_docstrings(site: Path) -> None:
    import platform_otel
    import platform_otel.logs
    import platform_otel.testing

    raw = (site / "api" / "index.html").read_text()
    text = _text(site / "api" / "index.html")
    # init()'s docstring, rendered (not only its name)
    assert "Configure OpenTelemetry for this process" in text
    assert "argument wins over its environment variable" in text
    # every public name has its own entry (mkdocstrings gives each an id)
    for module in (platform_otel, platform_otel.testing, platform_otel.logs):
        for name in module.__all__:
            assert f'id="{module.__name__}.{name}"' in raw, f"{module.__name__}.{name} missing"
    # Sphinx roles in the docstrings are shown as code, not as ":func:" text
    assert not re.search(r":(func|class|meth|attr|mod):", text)


def test_changelog_and_manifest_are_included(site: Path) -> None:
    changelog = _text(site / "changelog" / "index.html")
    assert "Versioning policy" in changelog
    first_release_heading = re.search(
        r"^## \[.+?\]", (REPO_ROOT / "CHANGELOG.md").read_text(), re.M
    )
    assert first_release_heading is not None
    assert first_release_heading.group(0)[3:] in changelog, "CHANGELOG.md is not included"
    kubernetes = _text(site / "kubernetes" / "index.html")
    assert "kind: Deployment" in kubernetes, "the manifest is not included"


# --------------------------------------------------------------------------- dashboards


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))
    return out


def _dashboards() -> list[tuple[Path, dict[str, Any]]]:
    files = sorted(DASHBOARDS.rglob("*.json"))
    assert files, f"no dashboards under {DASHBOARDS}"
    return [(f, json.loads(f.read_text())) for f in files]


def _sections(page: str) -> dict[str, str]:
    """``## heading`` -> that section's text, for docs/dashboards.md."""
    parts = re.split(r"^## (.+)$", page, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_dashboards_page_describes_every_panel_of_every_dashboard() -> None:
    """Each dashboard has its section; each panel and row title and each query is in it."""
    sections = _sections((DOCS / "dashboards.md").read_text())
    for path, dashboard in _dashboards():
        title = dashboard["title"]
        assert title in sections, f"docs/dashboards.md has no '## {title}' ({path.name})"
        section = sections[title]
        assert dashboard["uid"] in section, f"{title}: uid {dashboard['uid']} not named"
        squashed = _squash(section)
        for panel in _panels(dashboard["panels"]):
            assert panel["title"] in section, f"{title}: panel {panel['title']!r} not described"
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if expr:
                    assert _squash(expr) in squashed, (
                        f"{title} / {panel['title']}: query not on the page (or changed): {expr}"
                    )
