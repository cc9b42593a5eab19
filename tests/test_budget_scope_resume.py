"""A scope's cap of one run (`max_usd`) holds across a resume: the run's spend in the scope is
kept in the ledger under the run's id, so the same command again counts what the run spent
before instead of starting the scope from zero; raising the cap lets the stopped jobs run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import MODEL, journal_query, run_inprocess, write_config, write_jobs


def _research_spend(state: Path) -> float:
    rows = journal_query(state, "SELECT job_json, cost_usd FROM jobs")
    return sum(float(str(c)) for j, c in rows if json.loads(str(j))["metadata"]["team"] == "research")


def _done(state: Path, team: str) -> int:
    rows = journal_query(state, "SELECT job_json FROM jobs WHERE state = 'succeeded'")
    return sum(json.loads(str(j))["metadata"]["team"] == team for (j,) in rows)


@pytest.mark.slow
def test_a_resumed_run_counts_what_it_spent_in_a_scope_before(tmp_path: Path) -> None:
    worst = Pricer.from_overrides({}).worst_case_usd(MODEL, 30, 64)
    cap = 4.5 * worst
    jobs = [
        {"id": f"{team}-{i}", "prompt": f"q {i}", "metadata": {"team": team}}
        for team in ("research", "support")
        for i in range(10)
    ]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    state = tmp_path / ".anvil"
    with SimServer(SimConfig(seed=4)).start_thread() as sim:

        def run(cap_usd: float) -> int:
            scopes = {"metadata.team": {"research": {"max_usd": cap_usd}}}
            config = write_config(
                tmp_path / "anvil.yaml", sim.base_url, budget={"scopes": scopes}, cache={"enabled": False}
            )
            report = run_inprocess(config, batch)
            return report.exit_code

        assert run(cap) == ExitCode.STOPPED
        first = _research_spend(state)
        done = _done(state, "research")
        assert 0 < first <= cap and 0 < done < 10 and _done(state, "support") == 10

        assert run(cap) == ExitCode.STOPPED  # resumed: the scope was spent in this run already
        assert _research_spend(state) <= cap and _done(state, "research") == done

        assert run(10 * cap) == ExitCode.OK  # the cap raised: the stopped jobs run
    assert _done(state, "research") == 10
    assert journal_query(state, "SELECT COUNT(DISTINCT run_id) FROM jobs") == [(1,)]  # one run, resumed
