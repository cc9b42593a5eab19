"""`anvil report`'s file in a real browser with every network request refused: it draws every
chart from the embedded samples, shows a hostile job id as text, and runs nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import run_cli, run_inprocess, write_config, write_jobs

from .conftest import ALL_CHARTS_DRAWN, CHART_IDS, Console, chart_points

EVIL_ID = "</script><script>alert(1)</script><!--"
N_JOBS = 60  # at 4 agents and 0.3 s a call: ~4.5 s of samples


def _finished_run(tmp_path: Path) -> Path:
    """A finished run of a few seconds on the simulator; one job (with a hostile id) fails."""
    jobs: list[dict[str, Any]] = [{"id": f"job-{i:03d}", "prompt": f"q{i}"} for i in range(N_JOBS)]
    jobs.append({"id": EVIL_ID, "prompt": "@sim{fail=400x1} this one fails"})
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    with SimServer(SimConfig(latency_ms=300, seed=7)).start_thread() as sim:
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            scaling={"workers": 1, "max_agents": 4, "max_concurrent_jobs": 4, "min_agents": 4},
        )
        report = run_inprocess(config, batch)
    assert report.summary["counts"]["failed"] == 1, report.summary
    return config


def test_the_report_opened_offline_draws_every_chart(browser: Any, console: Console, tmp_path: Path) -> None:
    config = _finished_run(tmp_path)
    out = tmp_path / "report.html"
    done = run_cli("report", "-o", str(out), "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    requested: list[str] = []

    def refuse(route: Any) -> None:
        requested.append(route.request.url)
        if route.request.url == out.as_uri():
            route.continue_()
        else:
            route.abort()

    context.route("**/*", refuse)
    dialogs: list[str] = []
    page = console.watch(context.new_page())
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.goto(out.as_uri())
        page.wait_for_function(ALL_CHARTS_DRAWN, timeout=10_000)
        points = chart_points(page)
        assert list(points) == CHART_IDS and all(p >= 2 and d >= 2 for p, d in points.values()), points
        assert page.inner_text("#run-state") == "finished"
        assert page.inner_text("#count-done") == f"{N_JOBS + 1}"
        failures = page.eval_on_selector_all(
            "#failures-table tbody td:first-child", "tds => tds.map(t => t.textContent)"
        )
        assert failures == [EVIL_ID]  # shown as text...
        assert dialogs == []  # ...and never run
        assert page.is_hidden("#controls") and page.is_hidden("#lookup") and page.is_hidden("#login")
    finally:
        context.close()
    assert requested == [out.as_uri()]  # nothing but the file itself
    assert console.unexpected() == []
    assert json.dumps(EVIL_ID)[1:-1] not in out.read_text()
