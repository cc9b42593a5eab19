"""The web page's Endpoints table, live (`GET /status` through the real API server) and in the
report opened offline, for a run over three named endpoints (driven through the conductor over
the stub backend: tests/test_endpoint_views.py); each cell against the journal's own rows. A run
without named endpoints keeps the panel hidden."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.engine.backends.stub import answered
from anvil_cli.engine.journal.store import journal_path
from anvil_cli.session.control import RunControl
from anvil_cli.views.api.server import ApiServer
from anvil_cli.views.report import render_html, report_data
from tests.test_api_e2e import TOKEN, free_port
from tests.test_endpoint_views import T0, Ran, _from_rows, _run, by_endpoint

from .conftest import Console

READY = "() => document.getElementById('app').dataset.ready === '1'"
ROWS = "#endpoints-table tbody tr"


@pytest.fixture
def ran(tmp_path: Path) -> Iterator[Ran]:
    yield from _run(tmp_path, by_endpoint)


def _table(page: Any) -> dict[str, list[str]]:
    rows = page.eval_on_selector_all(ROWS, "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))")
    return {row[0]: row[1:] for row in rows}


def _fmt_usd(v: float) -> str:  # charts.js fmtUsd
    return "$" + (f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.4f}")


def _check(table: dict[str, list[str]], ran: Ran) -> None:
    expected = _from_rows(ran.journal, ran.run_id)
    assert set(table) == set(expected)
    for name, (calls, _, cost, _, errors, limited, _) in table.items():
        want = expected[name]
        assert int(calls.replace(",", "")) == want["calls"]
        assert cost == _fmt_usd(want["cost_usd"])
        assert (int(errors), int(limited)) == (want["errors"], want["rate_limited"])


def test_the_report_shows_cost_and_calls_by_endpoint(
    browser: Any, console: Console, ran: Ran, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    out.write_text(render_html(report_data(ran.journal, ran.run_id, now=T0)))
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    page = console.watch(context.new_page())
    try:
        page.goto(out.as_uri())
        page.wait_for_function(READY, timeout=10_000)
        assert page.is_visible("#endpoints-panel")
        _check(_table(page), ran)
    finally:
        context.close()
    assert console.unexpected() == []


def test_the_live_page_shows_cost_and_calls_by_endpoint(browser: Any, console: Console, ran: Ran) -> None:
    control = RunControl(journal_path(ran.state_dir), ran.run_id, agent_min=1, agent_max=4)
    server = ApiServer(control, "127.0.0.1", free_port(), TOKEN).start()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    try:
        page.goto(f"{server.url}/#token={TOKEN}")
        page.wait_for_function(
            "() => document.querySelectorAll('#endpoints-table tbody tr td.mono').length === 3",
            timeout=10_000,
        )
        _check(_table(page), ran)
    finally:
        context.close()
        server.stop()
        control.close()
    assert console.unexpected() == []


def test_a_run_without_named_endpoints_hides_the_panel(
    browser: Any, console: Console, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    for ran in _run(tmp_path, lambda worker, row: answered(worker, row, 0.002)):  # the one run
        out.write_text(render_html(report_data(ran.journal, ran.run_id, now=T0)))
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    page = console.watch(context.new_page())
    try:
        page.goto(out.as_uri())
        page.wait_for_function(READY, timeout=10_000)
        assert page.is_hidden("#endpoints-panel")
    finally:
        context.close()
    assert console.unexpected() == []
