"""A run whose scope runs out, seen on every view: the run stops for "budget_scope" (exit 3) with
its other scope's jobs done, and the spent scope is said by `anvil status` (text and --json),
the dashboard, the progress line, /metrics and `anvil status --budgets` (from the ledger)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from anvil_cli.commands.status import render_status
from anvil_cli.engine.journal.store import Journal
from anvil_cli.exitcodes import ExitCode
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.session.runner import RunReport
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.snapshot.status import status_json
from anvil_cli.views.api import prom
from anvil_cli.views.progress import snapshot_line
from tests.engine_support import MODEL, invoke_cli, run_inprocess, write_config, write_jobs

RESEARCH = "metadata.team=research"


@pytest.fixture(name="stopped", scope="module")
def fixture_stopped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunReport, float]:
    tmp = tmp_path_factory.mktemp("scopes")
    worst = Pricer.from_overrides({}).worst_case_usd(MODEL, 30, 64)
    cap = 5.5 * worst
    jobs = [
        {"id": f"{team}-{i}", "prompt": f"q {i}", "metadata": {"team": team}}
        for team in ("research", "support")
        for i in range(12)
    ]
    batch = write_jobs(tmp / "b.jsonl", jobs)
    with SimServer(SimConfig(seed=2)).start_thread() as sim:
        scopes = {"metadata.team": {"research": cap}}
        config = write_config(
            tmp / "anvil.yaml",
            sim.base_url,
            budget={"scopes": scopes, "per_month_usd": 50},
            cache={"enabled": False},
        )
        report = run_inprocess(config, batch)
    return tmp, report, cap


def _status(tmp: Path) -> dict[str, Any]:
    with Journal.open(tmp / ".anvil") as journal:
        return dict(status_json(journal))


def test_the_run_stops_for_its_scope_and_says_why(stopped: tuple[Path, RunReport, float]) -> None:
    _, report, _cap = stopped
    assert report.exit_code == ExitCode.STOPPED and report.summary["stop_reason"] == "budget_scope"
    c = report.summary["counts"]
    assert c["pending"] > 0 and c["succeeded"] + c["pending"] == 24 and c["failed"] == 0
    assert report.message is not None and report.message.startswith(f"scope {RESEARCH}: spent $")
    assert "resumed, the next day or with the cap raised, it runs these" in report.message


def test_status_text_and_json_say_the_scope_is_spent(stopped: tuple[Path, RunReport, float]) -> None:
    tmp, _, _cap = stopped
    st = _status(tmp)
    assert st["stop_reason"] == "budget_scope"
    [why] = st["budget_scopes"]
    assert why.startswith(f"scope {RESEARCH}: spent $")
    console = Console(width=200, record=True)
    console.print(render_status(st, 200))  # type: ignore[arg-type]
    text = console.export_text()
    assert "stopped: budget_scope" in text and f"scope {RESEARCH}: spent" in text
    lines = {(s["scope"], s["window"]): s for s in st["governor"]["scopes"]}
    assert lines[(RESEARCH, "day")]["exhausted"] and lines[("all", "month")]["cap_usd"] == 50


def test_the_dashboard_progress_line_and_metrics_say_it(stopped: tuple[Path, RunReport, float]) -> None:
    tmp, _, cap = stopped
    st = _status(tmp)
    line = snapshot_line(st)  # type: ignore[arg-type]
    assert f"scope budget spent, its jobs stopped: {RESEARCH} (day, $" in line
    metrics = prom.render(st).decode()
    assert f'anvil_budget_scope_cap_usd{{scope="{RESEARCH}",window="day"}} {cap}' in metrics
    assert f'anvil_budget_scope_spent_usd{{scope="{RESEARCH}",window="day"}}' in metrics
    assert 'anvil_budget_scope_cap_usd{scope="all",window="month"} 50.0' in metrics


def test_status_budgets_reads_the_ledger_with_no_run_going(stopped: tuple[Path, RunReport, float]) -> None:
    tmp, report, cap = stopped
    out = invoke_cli("status", "--budgets", "--json", "--config", str(tmp / "anvil.yaml"), cwd=tmp)
    assert out.returncode == 0, out.stderr
    lines = {(b["scope"], b["window"]): b for b in json.loads(out.stdout)["budgets"]}
    research, month = lines[(RESEARCH, "day")], lines[("all", "month")]
    with Journal.open(tmp / ".anvil") as journal:
        total = journal.totals(report.run_id)["cost_usd"]
    assert month["spent_usd"] == pytest.approx(total) and month["reserved_usd"] == 0.0
    assert research["spent_usd"] <= cap and research["left_usd"] == pytest.approx(cap - research["spent_usd"])
    text = invoke_cli("status", "--budgets", "--config", str(tmp / "anvil.yaml"), cwd=tmp)
    assert text.returncode == 0 and RESEARCH in text.stdout and research["period"] in text.stdout


def test_status_budgets_without_caps_says_so(tmp_path: Path) -> None:
    out = invoke_cli("status", "--budgets", "--state-dir", str(tmp_path / "none"), cwd=tmp_path)
    assert out.returncode == 0 and "no budgets by scope or window are set" in out.stdout
    assert not (tmp_path / "none").exists()  # reading creates nothing
