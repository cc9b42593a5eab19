"""Scoped budgets hold under concurrency: two `anvil run` processes sharing a state dir, a hundred
agents between them racing one scope's last dollars against one simulator. The scope's spend —
in the ledger and, exactly, in the two journals — never passes its cap; the other scope's jobs
all finish; the stopped jobs are journaled (pending, an event, the run stopped for
"budget_scope") and a resume with the cap raised runs them, paying no job twice."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from anvil_cli.exitcodes import ExitCode
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import MODEL, anvil_cmd, cli_env, invoke_cli, write_config, write_jobs

RUNS = 2
PER_TEAM = 50  # jobs of each team in each run
AGENTS = 50  # per run: a hundred racing
RESEARCH = "metadata.team=research"


def _jobs(run: int) -> list[dict[str, Any]]:
    return [
        {"id": f"{team}-{run}-{i:03d}", "prompt": f"question {i} of {team}", "metadata": {"team": team}}
        for team in ("research", "support")
        for i in range(PER_TEAM)
    ]


def _team_spend(state_dir: Path) -> dict[tuple[str, str], tuple[int, float]]:
    """(team, state) -> (jobs, USD) over every run of the journal."""
    with sqlite3.connect(state_dir / "journal.sqlite") as db:
        rows = db.execute(
            "SELECT json_extract(job_json, '$.metadata.team'), state, COUNT(*), COALESCE(SUM(cost_usd), 0)"
            " FROM jobs GROUP BY 1, 2"
        ).fetchall()
    return {(team, state): (n, usd) for team, state, n, usd in rows}


def _ledger_spent(state_dir: Path, scope: str) -> float:
    with sqlite3.connect(state_dir / "ledger.sqlite") as db:
        row = db.execute(
            "SELECT SUM(spent_usd) FROM spend WHERE scope = ? AND win = 'day'", (scope,)
        ).fetchone()
    return float(row[0] or 0.0)


def _journal_total(state_dir: Path) -> float:
    with sqlite3.connect(state_dir / "journal.sqlite") as db:
        return float(db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM jobs").fetchone()[0])


def _run_all(batches: list[Path], config: Path, cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """The runs at once, as two users would start them."""
    procs = [
        subprocess.Popen(
            [*anvil_cmd("run", str(b), "--config", str(config)), "--no-dashboard", "--json"],
            cwd=cwd,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for b in batches
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


@pytest.mark.slow
def test_two_runs_racing_one_scopes_last_dollars_never_pass_its_cap(tmp_path: Path) -> None:
    worst = Pricer.from_overrides({}).worst_case_usd(MODEL, 30, 64)
    cap = 30.5 * worst  # about a third of the research jobs fit
    batches = [write_jobs(tmp_path / f"b{run}.jsonl", _jobs(run)) for run in range(RUNS)]
    state_dir = tmp_path / ".anvil"
    scopes = {"metadata.team": {"research": cap, "support": {"per_day_usd": 100.0}}}
    with SimServer(SimConfig(seed=5, latency_ms=150, latency_spread=0.3)).start_thread() as sim:
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            budget={"scopes": scopes},
            cache={"enabled": False},
            scaling={"workers": 1, "min_agents": AGENTS, "max_agents": AGENTS, "max_concurrent_jobs": AGENTS},
        )
        first = _run_all(batches, config, tmp_path)
        for proc in first:
            assert proc.returncode == ExitCode.STOPPED, proc.stderr[-2000:]
            summary = json.loads(proc.stdout)
            assert summary["stop_reason"] == "budget_scope"

        spend = _team_spend(state_dir)
        research_paid = spend[("research", "succeeded")][1]
        assert research_paid <= cap + 1e-9  # exact, from the two journals
        assert _ledger_spent(state_dir, RESEARCH) == pytest.approx(research_paid, abs=1e-9)
        assert spend[("research", "succeeded")][0] + spend[("research", "pending")][0] == RUNS * PER_TEAM
        assert spend[("research", "pending")][0] > 0 and spend[("research", "pending")][1] == 0.0
        assert spend[("support", "succeeded")][0] == RUNS * PER_TEAM  # the other scope went on
        assert ("support", "pending") not in spend

        status = invoke_cli("status", "--budgets", "--json", "--state-dir", str(state_dir), cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        lines = {(b["scope"], b["window"]): b for b in json.loads(status.stdout)["budgets"]}
        research = lines[(RESEARCH, "day")]
        assert research["spent_usd"] == pytest.approx(research_paid) and research["cap_usd"] == pytest.approx(
            cap
        )
        assert research["reserved_usd"] == 0.0 and research["left_usd"] == pytest.approx(cap - research_paid)

        with sqlite3.connect(state_dir / "journal.sqlite") as db:
            events = db.execute(
                "SELECT run_id, data_json FROM events WHERE kind = 'budget_scope_exhausted'"
            ).fetchall()
        assert events and all(json.loads(data)["scope"] == RESEARCH for _, data in events)

        # the next day, or with the cap raised: `anvil run` again resumes each and runs the rest
        raised = yaml.safe_load(config.read_text())
        raised["budget"]["scopes"]["metadata.team"]["research"] = 100.0
        config.write_text(yaml.safe_dump(raised))
        again = _run_all(batches, config, tmp_path)
        for proc in again:
            assert proc.returncode == ExitCode.OK, proc.stderr[-2000:]

    spend = _team_spend(state_dir)
    assert spend[("research", "succeeded")][0] == RUNS * PER_TEAM
    assert set(spend) == {("research", "succeeded"), ("support", "succeeded")}
    # each job paid once: the ledger's spend of the day is the journals' (support counted apart)
    ledger_total = _ledger_spent(state_dir, RESEARCH) + _ledger_spent(state_dir, "metadata.team=support")
    assert ledger_total == pytest.approx(_journal_total(state_dir), abs=1e-9)
