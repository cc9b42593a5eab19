"""The web page's Checks table, in a real browser: `anvil report`'s file (the live page's HTML and
JavaScript) of a run whose answers were checked (written by the real journal:
tests/test_checks_views.py) shows the pass rate by model, by variant and by metadata key, each
row against the summary computed by hand; a run without checks keeps the panel hidden."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.outcomes import JobResult
from anvil_cli.views.report import render_html, report_data
from tests.snapshot_support import T0
from tests.test_checks_views import EXPECTED, HAIKU, JOBS, _job, _results, _run

from .conftest import Console

READY = "() => document.getElementById('app').dataset.ready === '1'"


def _open(browser: Any, console: Console, html: Path) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    page = console.watch(context.new_page())
    page.goto(html.as_uri())
    page.wait_for_function(READY, timeout=10_000)
    return context, page


def test_the_report_shows_pass_rates_by_model_variant_and_metadata(
    browser: Any, console: Console, tmp_path: Path
) -> None:
    ran = _run(tmp_path, JOBS, _results(), ["team"])
    out = tmp_path / "report.html"
    with Journal.open(ran.state_dir) as journal:
        out.write_text(render_html(report_data(journal, ran.run_id, now=T0)))
    context, page = _open(browser, console, out)
    try:
        assert page.is_visible("#checks-panel")
        rows = page.eval_on_selector_all(
            "#checks-table tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))"
        )
        line = page.text_content("#checks-line") or ""
    finally:
        context.close()
    assert console.unexpected() == []
    groups = {(r[0], r[1]): r[2:] for r in rows}
    expected = {("model", m): g for m, g in EXPECTED["by_model"].items()}
    expected |= {("variant", v): g for v, g in EXPECTED["by_variant"].items()}
    expected |= {("metadata.team", v): g for v, g in EXPECTED["by"]["team"].items()}
    assert set(groups) == set(expected)
    for key, (checked, passed, rate, score, jobs, _cost) in groups.items():
        want = expected[key]
        assert (int(checked), int(passed), int(jobs)) == (want["checked"], want["passed"], want["jobs"])
        assert rate == f"{100 * want['pass_rate']:.1f}%" and score == f"{want['mean_score']:.2f}"
    assert groups[("model", HAIKU)][2] == "50.0%"
    assert "1/4 passed (25.0%)" in line and "mean score 0.53" in line and "judges $0.0015" in line


def test_a_run_without_checks_hides_the_panel(browser: Any, console: Console, tmp_path: Path) -> None:
    log = (Attempt(1, HAIKU, 200, latency_s=0.2),)
    ran = _run(
        tmp_path, [_job(0, "a", HAIKU, "a", None, False)], [JobResult(0, True, HAIKU, 1, attempt_log=log)], []
    )
    out = tmp_path / "report.html"
    with Journal.open(ran.state_dir) as journal:
        out.write_text(render_html(report_data(journal, ran.run_id, now=T0)))
    context, page = _open(browser, console, out)
    try:
        assert page.is_hidden("#checks-panel")
    finally:
        context.close()
    assert console.unexpected() == []
