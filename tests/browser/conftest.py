"""Browser tests of the web page: Playwright (PyPI) driving Debian's Chromium (`/usr/bin/chromium`;
`.ci/run` installs it). Without either they are skipped, saying what is missing. Never
`playwright install`: no browser is downloaded."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # 127.0.0.1 only, whatever the environment says
]
NETWORK_NOISE = "net::ERR_CONNECTION_REFUSED"  # what Chromium logs when a polled server is gone


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module; each test opens its own context (a fresh profile:
    Playwright launches Chromium with a new temporary user-data-dir). Not for the session:
    Playwright's sync API keeps an event loop marked running in the main thread until it stops,
    and the other tests' `asyncio.run()` would refuse to start."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Console:
    """What a page said on its console (errors) and threw (uncaught exceptions)."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> Any:
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        return page

    def unexpected(self, *allowed: str) -> list[str]:
        """The errors, less those containing one of `allowed`."""
        return [e for e in self.errors if not any(a in e for a in allowed)]


@pytest.fixture
def console() -> Console:
    return Console()


# every chart has drawn at least two points of every line (set by charts.js from uPlot's data)
ALL_CHARTS_DRAWN = """() => {
  const charts = [...document.querySelectorAll('[data-chart]')];
  return charts.length > 0 && charts.every((c) => Number(c.dataset.drawn) >= 2
    && c.querySelector('canvas') !== null && c.querySelector('canvas').width > 0);
}"""

CHART_IDS = ["throughput", "latency", "errors", "cost", "agents", "limiter", "jobs"]


def chart_points(page: Any) -> dict[str, tuple[int, int]]:
    """Per chart: (points, the fewest drawn of any of its lines)."""
    rows = page.eval_on_selector_all(
        "[data-chart]", "cs => cs.map(c => [c.dataset.chart, +c.dataset.points, +c.dataset.drawn])"
    )
    return {name: (points, drawn) for name, points, drawn in rows}
