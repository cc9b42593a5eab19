"""`anvil plan --sample N` and plans from history, end to end against the simulator over HTTP:
short answers under a large `max_tokens` (where the old rule was 5x off), the sample paid once
(the batch's run takes it from the result cache), `--max-usd` as a CI gate, `--json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anvil_cli.engine.journal.history import history_answers
from anvil_cli.engine.journal.store import Journal
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import read_results, run_cli, write_config, write_jsonl_batch

N_JOBS = 200
SAMPLE = 20


def _setup(tmp_path: Path, sim: SimServer) -> tuple[Path, Path]:
    prompts = [f"question {i} " + "context " * (20 + i % 40) for i in range(N_JOBS)]
    batch = write_jsonl_batch(tmp_path / "b.jsonl", prompts, max_tokens=4096)
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    return batch, config


@pytest.mark.slow
def test_a_sampled_plan_forecasts_short_answers_and_the_run_pays_for_the_sample_once(tmp_path: Path) -> None:
    with SimServer(
        SimConfig(seed=9, latency_ms=20, output_tokens=110, output_tokens_spread=0.3)
    ).start_thread() as sim:
        batch, config = _setup(tmp_path, sim)
        ruled = json.loads(
            run_cli("plan", str(batch), "--config", str(config), "--json", cwd=tmp_path).stdout
        )
        assert ruled["method"] == "rule" and sim.stats()["requests"] == 0  # nothing billable

        proc = run_cli(
            "plan", str(batch), "--config", str(config), "--json", "--sample", str(SAMPLE), cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        plan = json.loads(proc.stdout)
        assert plan["method"] == "sample" and plan["sample"]["jobs"] == SAMPLE
        assert sim.stats()["requests"] == SAMPLE
        assert plan["models"][0]["output_source"] == "sample"

        out = tmp_path / "out.jsonl"
        run = run_cli("run", str(batch), "--config", str(config), "-o", str(out), "--json", cwd=tmp_path)
        assert run.returncode == ExitCode.OK, run.stderr
        summary = json.loads(run.stdout)
        assert summary["cache_hits"] == SAMPLE
        stats = sim.stats()
        assert stats["requests"] == N_JOBS and stats["paid_duplicates"] == 0  # each job paid once
        assert len(read_results(out)) == N_JOBS

    total = summary["run_cost_usd"] + plan["sample"]["spent_usd"]
    cost = plan["cost_range_usd"]
    assert cost["p10"] <= total <= cost["p90"], (cost, total)
    assert abs(cost["expected"] - total) / total < 0.15, (cost, total)
    assert abs(ruled["expected_usd"] - total) / total > 2.0  # half of max_tokens each: far off

    # the next plan of these models learns from what the run answered, and says so
    again = json.loads(run_cli("plan", str(batch), "--config", str(config), "--json", cwd=tmp_path).stdout)
    assert again["method"] == "history"
    assert abs(again["cost_range_usd"]["expected"] - total) / total < 0.1
    with Journal.open(tmp_path / ".anvil") as journal:
        answers = history_answers(journal)
    assert len(answers) == N_JOBS  # every call answered once: the cache hits are not observations
    assert {a.model for a in answers} == {plan["models"][0]["model"]}


@pytest.mark.slow  # a whole run or several: the slow tier (CI runs it after the default suite)
def test_max_usd_fails_the_gate_before_the_batch_spends(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=9, latency_ms=20, output_tokens=110)).start_thread() as sim:
        batch, config = _setup(tmp_path, sim)
        gate = run_cli("plan", str(batch), "--config", str(config), "--max-usd", "0.0001", cwd=tmp_path)
        assert gate.returncode == ExitCode.STOPPED
        assert "passes --max-usd" in gate.stderr and sim.stats()["requests"] == 0
        ok = run_cli("plan", str(batch), "--config", str(config), "--max-usd", "1000", cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        assert "p10" in ok.stdout and "p90" in ok.stdout
