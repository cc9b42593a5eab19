"""The report (and the live page: the same app.js) writes times as the terminal does
(anvil_cli/timefmt.py): ISO 8601 to the second, in the browser's zone, with its offset."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from anvil_cli.engine.journal.store import Journal
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.views.report import render_html, report_data
from tests.engine_support import run_inprocess, write_config, write_jsonl_batch

from .conftest import Console

WRITTEN_AT = 1_782_875_700.0  # 2026-07-01T03:15:00Z: daylight saving time in New York


def _iso_in(zone: str, wall: float) -> str:
    return datetime.fromtimestamp(int(wall), ZoneInfo(zone)).isoformat()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp_path = tmp_path_factory.mktemp("dates")
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b", "c"])
    with SimServer(SimConfig(seed=2)).start_thread() as sim:
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        run_inprocess(config, batch)
    with Journal.open(tmp_path / ".anvil") as journal:
        data = report_data(journal, None, now=WRITTEN_AT)
    out = tmp_path / "report.html"
    out.write_text(render_html(data))
    return out, data


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "America/New_York", "UTC"])
def test_the_report_s_times_are_iso_8601_in_the_browser_s_zone(
    browser: Any, console: Console, report_file: tuple[Path, dict[str, Any]], zone: str
) -> None:
    out, data = report_file
    context = browser.new_context(timezone_id=zone, offline=True)
    page = console.watch(context.new_page())
    try:
        page.goto(out.as_uri())
        page.wait_for_function("() => document.getElementById('app').dataset.ready === '1'", timeout=10_000)
        summary = page.eval_on_selector_all(
            "#summary-list dt",
            "dts => Object.fromEntries(dts.map(d => [d.textContent, d.nextElementSibling.textContent]))",
        )
        connection = page.inner_text("#connection")
    finally:
        context.close()
    status = data["status"]
    assert summary["started"] == _iso_in(zone, status["created_at"])
    assert summary["ended"] == _iso_in(zone, status["ended_at"])
    assert connection.endswith(", written " + _iso_in(zone, WRITTEN_AT))
    assert console.unexpected() == []
