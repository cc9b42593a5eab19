"""The web page tells the truth about a run that has ended or cannot be reached: a finished run
shows "finished" with every control off (not "running 99%" with live buttons), and a run whose
server went away shows "connection lost" with every control off. Real servers, real browser;
every wait is on a condition."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.engine.journal.store import journal_path
from anvil_cli.exitcodes import ExitCode
from anvil_cli.session.control import RunControl
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.views.api.server import ApiServer
from tests.engine_support import run_inprocess, write_config, write_jsonl_batch
from tests.test_api_e2e import TOKEN, Served, free_port, start_served

from .conftest import NETWORK_NOISE, Console

WAIT_MS = 30_000
CONTROLS = ["#btn-pause", "#btn-resume", "#btn-drain", "#scale-input", "#scale-form button"]
STATE_IS = "s => document.getElementById('run-state').textContent === s"


def _open(browser: Any, console: Console, url: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    page.goto(url)
    return context, page


def _all_disabled(page: Any) -> bool:
    breakers = page.query_selector_all("button[data-breaker]")
    return all(page.is_disabled(sel) for sel in CONTROLS) and all(b.is_disabled() for b in breakers)


@pytest.fixture
def finished_run_api(tmp_path: Path) -> Iterator[str]:
    """The API of a run that has finished (the same server `anvil run --serve` starts)."""
    with SimServer(SimConfig(seed=3, latency_ms=5)).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(6)])
        report = run_inprocess(write_config(tmp_path / "anvil.yaml", sim.base_url), batch)
    assert report.exit_code == ExitCode.OK
    control = RunControl(journal_path(tmp_path / ".anvil"), report.run_id, agent_min=1, agent_max=4)
    server = ApiServer(control, "127.0.0.1", free_port(), TOKEN).start()
    try:
        yield server.url
    finally:
        server.stop()
        control.close()


def test_a_finished_run_shows_its_final_state_with_every_control_off(
    browser: Any, console: Console, finished_run_api: str
) -> None:
    context, page = _open(browser, console, f"{finished_run_api}/#token={TOKEN}")
    try:
        page.wait_for_function(STATE_IS, arg="finished", timeout=WAIT_MS)
        assert page.text_content("#progress-pct") == "100.0%"
        assert _all_disabled(page)
        assert "the run has ended: finished" in page.text_content("#connection")
    finally:
        context.close()
    assert console.unexpected() == []


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with SimServer(SimConfig(latency_ms=200, seed=5)).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(400)])
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            scaling={"workers": 1, "max_agents": 2, "max_concurrent_jobs": 2, "min_agents": 1},
        )
        run = start_served(tmp_path, batch, config)
        try:
            yield run
        finally:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()


def test_a_run_that_cannot_be_reached_says_connection_lost_with_every_control_off(
    browser: Any, console: Console, served: Served
) -> None:
    context, page = _open(browser, console, f"{served.api.url}/#token={TOKEN}")
    try:
        page.wait_for_function(STATE_IS, arg="running", timeout=WAIT_MS)
        assert page.is_enabled("#btn-pause") and page.is_enabled("#btn-drain")
        served.proc.kill()  # the run's process (and its server) gone at once
        served.proc.wait()
        page.wait_for_function(STATE_IS, arg="connection lost", timeout=WAIT_MS)
        assert _all_disabled(page)
        assert page.text_content("#connection").startswith("connection lost")
    finally:
        context.close()
    assert console.unexpected(NETWORK_NOISE) == []
