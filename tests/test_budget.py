"""The budget holds under many concurrent agents, warns, stops with exit 3 and resumes."""

from __future__ import annotations

from pathlib import Path

from anvil_cli.engine.journal.store import Journal
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import read_results, run_inprocess, write_config, write_jsonl_batch


def test_spend_never_passes_the_cap_with_many_agents_then_resumes(tmp_path: Path) -> None:
    cap = 0.01  # ~30 haiku calls at max_tokens 64 (worst case ~$0.00034 each)
    with SimServer(
        SimConfig(seed=2, latency_ms=20, output_tokens=60, output_tokens_spread=0.3)
    ).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"question number {i}" for i in range(200)])
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            scaling={"workers": 2, "max_agents": 50, "max_concurrent_jobs": 50},
            budget={"max_usd": cap, "warn_usd": cap / 2},
            cache={"enabled": False},
        )
        out = tmp_path / "out.jsonl"
        report = run_inprocess(config, batch, out)
        assert report.exit_code == ExitCode.STOPPED and report.summary["stop_reason"] == "budget"
        results = read_results(out)
        spent = sum(float(r["cost_usd"]) for r in results)
        assert 0 < spent <= cap and report.summary["run_cost_usd"] <= cap
        assert 10 < sum(r["status"] == "succeeded" for r in results) < 200
        assert sum(r["status"] == "pending" for r in results) > 0
        with Journal.open(tmp_path / ".anvil") as journal:
            warn = journal.events(report.run_id, "budget_warn")
        assert warn and warn[0]["spent_usd"] >= cap / 2

        config = write_config(
            tmp_path / "anvil.yaml", sim.base_url, budget={"max_usd": 1.0}, cache={"enabled": False}
        )
        again = run_inprocess(config, batch, out)
        assert again.exit_code == ExitCode.OK and again.run_id == report.run_id
        assert all(r["status"] == "succeeded" for r in read_results(out))
        assert sim.stats()["paid_duplicates"] == 0
