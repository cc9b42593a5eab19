"""The live dashboard in a real browser, against a real `anvil run --serve` on the simulator: it
shows what GET /status says, draws every chart, steers the run (pause, scale, breakers, drain,
each confirmed in a dialog), and shows nothing without the token. Every wait is on a condition;
nothing sleeps."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import MODEL, write_config, write_jsonl_batch
from tests.test_api_e2e import TOKEN, Served, start_served, wait_for

from .conftest import ALL_CHARTS_DRAWN, CHART_IDS, NETWORK_NOISE, Console, chart_points

N_JOBS = 400  # at 4 agents and 0.2 s a call: ~20 s, far more than the tests need before pausing
AGENTS = 4
WAIT_MS = 30_000


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with SimServer(SimConfig(latency_ms=200, seed=5)).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(N_JOBS)])
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            scaling={"workers": 1, "max_agents": AGENTS, "max_concurrent_jobs": AGENTS, "min_agents": 1},
        )
        run = start_served(tmp_path, batch, config)
        try:
            yield run
        finally:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()


def _open(browser: Any, console: Console, url: str, dialogs: list[str]) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))  # confirmations
    page.goto(url)
    return context, page


def _shown_counts(page: Any) -> dict[str, int]:
    cells = page.eval_on_selector_all("[data-count]", "ds => ds.map(d => [d.dataset.count, d.textContent])")
    return {name: int(text.replace(",", "")) for name, text in cells}


def test_the_page_shows_the_run_draws_every_chart_and_pauses_and_drains_it(
    browser: Any, console: Console, served: Served
) -> None:
    dialogs: list[str] = []
    context, page = _open(browser, console, f"{served.api.url}/#token={TOKEN}", dialogs)
    try:
        page.wait_for_function(ALL_CHARTS_DRAWN, timeout=WAIT_MS)
        assert page.url == f"{served.api.url}/"  # the token left the address bar...
        assert page.evaluate("sessionStorage.getItem('anvil.token')") == TOKEN  # ...for this tab only
        points = chart_points(page)
        assert list(points) == CHART_IDS and all(p >= 2 and d >= 2 for p, d in points.values()), points

        page.click("#btn-pause")
        wait_for(lambda: (s := served.api.status())["paused"] and s["counts"]["running"] == 0, what="paused")
        counts = served.api.status()["counts"]  # nothing starts while paused: these stay
        page.wait_for_function(
            "c => Object.entries(c).every(([k, v]) => document.getElementById('count-' + k)"
            ".textContent.replace(/,/g, '') === String(v))",
            arg=counts,
            timeout=WAIT_MS,
        )
        assert _shown_counts(page) == counts and 0 < counts["done"] < N_JOBS
        # the live forecast, as GET /status has it (anvil plan's model over the answers so far)
        expected = served.api.status()["cost"]["projected_range_usd"]["expected"]
        page.wait_for_function("() => document.getElementById('projected').textContent.startsWith('$')")
        shown = page.text_content("#projected").split()[0]
        assert float(shown.lstrip("$")) == pytest.approx(expected, rel=0.01, abs=0.0001), shown
        page.wait_for_function("() => document.getElementById('run-state').textContent === 'paused'")
        assert page.is_disabled("#btn-pause") and page.is_enabled("#btn-resume")

        page.fill("#scale-input", "2")
        page.click("#scale-form button")
        wait_for(lambda: served.api.status()["agents"]["limit"] == 2, what="agent limit 2")
        page.click(f"#models-table button[data-breaker=open][data-model='{MODEL}']")
        wait_for(lambda: served.api.status()["breakers"].get(MODEL, {}).get("state") == "open", what="open")
        page.wait_for_selector("#models-table td.breaker-open")
        page.click(f"#models-table button[data-breaker=close][data-model='{MODEL}']")
        wait_for(lambda: served.api.status()["breakers"][MODEL]["state"] == "closed", what="closed")

        page.fill("#lookup-input", "job-0000")
        page.click("#lookup-form button")
        page.wait_for_function(
            "() => document.getElementById('lookup-result').textContent.includes('succeeded')"
        )

        page.click("#btn-drain")
        assert served.finish() == ExitCode.INTERRUPTED, served.stderr()  # drained: resumable
        asked = ["Pause the run", "Set the agent limit to 2", f"Force the circuit breaker of {MODEL} open",
                 f"Close the circuit breaker of {MODEL}", "Drain and stop the run"]  # fmt: skip
        assert [d[: len(a)] for d, a in zip(dialogs, asked, strict=True)] == asked
        assert "resume" in served.stderr()
    finally:
        context.close()
    # the page may poll once more before it sees the run is gone; anything else is a fault
    assert console.unexpected(NETWORK_NOISE) == []
    assert TOKEN not in served.stderr()  # the user's own token is not echoed off a terminal
    journal = served.cwd / ".anvil" / "journal.sqlite"
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] >= 2
    assert TOKEN.encode() not in journal.read_bytes()


def test_without_the_token_only_the_prompt_shows_and_the_api_refuses(
    browser: Any, console: Console, served: Served
) -> None:
    requested: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.on("request", lambda request: requested.append(request.url.removeprefix(served.api.url)))
    try:
        page.goto(f"{served.api.url}/")
        page.wait_for_selector("#login", state="visible")
        assert page.is_hidden("#app")
        run_id = served.api.status()["run_id"]
        assert run_id not in page.inner_text("body")
        assert all(path == "/" or path.startswith("/static/") for path in requested), requested
        for path in ("/status", "/series", "/jobs/job-0000"):
            assert served.api.request("GET", path, token="not-the-token")[0] == 401, path

        page.fill("#token-input", "not-the-token")  # a wrong token: refused, back to the prompt
        page.click("#login-form button")
        page.wait_for_selector("#login-error", state="visible")
        assert page.is_hidden("#app") and "refused" in page.inner_text("#login-error")
        assert page.evaluate("sessionStorage.getItem('anvil.token')") is None

        page.fill("#token-input", TOKEN)  # the right one: the run appears
        page.click("#login-form button")
        page.wait_for_function(f"() => document.getElementById('run-id').textContent === {run_id!r}")
        assert page.is_hidden("#login")
    finally:
        context.close()
    # the page's own refused requests are logged by Chromium as 401s; nothing else may be
    assert console.unexpected("status of 401") == []
