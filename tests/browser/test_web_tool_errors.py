"""Failed tool calls on the run page, in a real browser: the live page (`anvil run --serve`) shows
the run's count and its last tool error; `anvil report`'s file (the same HTML and JavaScript)
the count and the jobs with their last tool error; a tool's text always as text."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import run_cli, write_config, write_jobs
from tests.test_api_e2e import TOKEN, start_served, wait_for

from .conftest import NETWORK_NOISE, Console

HOSTILE = "<img src=x onerror=alert(1)>"
FAIL = [sys.executable, "-c", f"import sys; print({HOSTILE!r}, file=sys.stderr); sys.exit(4)"]
SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


def test_the_report_shows_the_tool_errors(browser: Any, console: Console, tmp_path: Path) -> None:
    tool = {"name": "probe", "description": "d", "input_schema": SCHEMA, "anvil_command": FAIL}
    jobs = [{"id": f"t{i}", "prompt": f"q{i}", "tools": [tool]} for i in range(2)]
    jobs.append({"id": "plain", "prompt": "no tool"})
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    with SimServer(SimConfig(seed=9)).start_thread() as sim:
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        done = run_cli("run", str(batch), "--config", str(config), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "report.html"
    made = run_cli("report", "-o", str(out), "--config", str(config), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    dialogs: list[str] = []
    page = console.watch(context.new_page())
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.goto(out.as_uri())
        page.wait_for_selector("#app[data-ready='1']", state="attached", timeout=10_000)
        assert page.inner_text("#tool-errors") == "2"
        assert page.is_visible("#tool-errors-panel")
        rows = page.eval_on_selector_all(
            "#tool-errors-table tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))"
        )
        assert rows == [[f"t{i}", "probe", "exit", "1", f"exit code 4: {HOSTILE}"] for i in range(2)]
        assert "Jobs with tool errors: 2" in page.inner_text("#tool-errors-title")
        summary = page.inner_text("#summary-list")
        assert "tool errors" in summary and f"probe exit: exit code 4: {HOSTILE}" in summary
        assert dialogs == []  # the tool's text was shown, never run
    finally:
        context.close()
    assert console.unexpected() == []


def test_the_live_page_shows_the_count_and_the_last_tool_error(
    browser: Any, console: Console, tmp_path: Path
) -> None:
    tool = {"name": "probe", "description": "d", "input_schema": SCHEMA, "anvil_command": FAIL}
    jobs: list[dict[str, Any]] = [{"id": "tooled", "prompt": "q", "tools": [tool], "priority": "critical"}]
    jobs += [{"id": f"job-{i:03d}", "prompt": f"q{i}"} for i in range(300)]  # keep the run going
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    with SimServer(SimConfig(latency_ms=200, seed=10)).start_thread() as sim:
        scaling = {"workers": 1, "max_agents": 2, "max_concurrent_jobs": 2, "min_agents": 1}
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, scaling=scaling)
        served = start_served(tmp_path, batch, config)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            wait_for(lambda: served.api.status()["tool_errors"] == 1, what="the tool error journaled")
            page = console.watch(context.new_page())
            page.goto(f"{served.api.url}/#token={TOKEN}")
            page.wait_for_function("() => document.getElementById('tool-errors').textContent === '1'")
            page.wait_for_selector("#tool-errors-panel", state="visible")
            cells = "tds => tds.map(t => t.textContent)"
            row = page.eval_on_selector_all("#tool-errors-table tbody td", cells)
            assert row == ["#0", "probe", "exit", "–", f"exit code 4: {HOSTILE}"]
            assert "1 failed tool calls" in page.inner_text("#tool-errors-title")
        finally:
            context.close()
            if served.proc.poll() is None:
                served.api.post("/drain")
            served.finish(timeout_s=30)
    assert console.unexpected(NETWORK_NOISE) == []
