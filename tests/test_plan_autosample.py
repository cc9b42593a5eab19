"""`anvil plan --sample auto` end to end against the simulator over HTTP: rounds until the cost's
p10-p90 half-width is within `--precision`, the precision said being the plan's own, the
journal holding exactly the answers and the spend the plan claims, the same command again
paying nothing; a precision the sample's budget cannot buy stops and says what more would
cost; a stop between rounds (Ctrl-C) keeps what was measured; bad values of `--sample` and
`--precision` are usage errors (exit 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from anvil_cli.config.load import load_settings
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.exitcodes import ExitCode
from anvil_cli.jobs.loader import load_batch
from anvil_cli.plan.autosample import auto_lines, sample_auto
from anvil_cli.plan.estimate import Plan, make_plan, output_model
from anvil_cli.plan.rounds import precision
from anvil_cli.plan.sample import SampleOutcome
from anvil_cli.policy.forecast import fit_models
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import invoke_cli, journal_query, write_config, write_jsonl_batch


def _setup(tmp_path: Path, sim: SimServer, jobs: int) -> tuple[Path, Path]:
    prompts = [f"question {i} " + "context " * (20 + i % 40) for i in range(jobs)]
    batch = write_jsonl_batch(tmp_path / "b.jsonl", prompts, max_tokens=400)
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    return batch, config


def _sampled(state_dir: Path) -> tuple[set[str], int, float]:
    """The journal's sample runs, their answered jobs and what those cost."""
    runs = {str(r[0]) for r in journal_query(state_dir, "SELECT id FROM runs WHERE kind = 'sample'")}
    ((answers, cost),) = journal_query(
        state_dir,
        "SELECT COUNT(*), COALESCE(SUM(cost_usd), 0) FROM jobs"
        " WHERE state = 'succeeded' AND run_id IN (SELECT id FROM runs WHERE kind = 'sample')",
    )
    return runs, int(str(answers)), float(str(cost))


@pytest.mark.slow  # several sample runs
def test_auto_samples_in_rounds_to_the_precision_and_the_journal_holds_what_it_claims(tmp_path: Path) -> None:
    cfg = SimConfig(seed=9, latency_ms=10, output_tokens=110, output_tokens_spread=0.5)
    with SimServer(cfg).start_thread() as sim:
        batch, config = _setup(tmp_path, sim, 120)
        args = ("plan", str(batch), "--config", str(config), "--sample", "auto", "--precision", "0.08")
        proc = invoke_cli(*args, "--json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        plan = json.loads(proc.stdout)
        paid = sim.stats()
        again = invoke_cli(*args, cwd=tmp_path)  # the same rounds, their runs reused
        assert again.returncode == 0, again.stderr
        assert sim.stats()["requests"] == paid["requests"]  # nothing paid twice

    sample, cost = plan["sample"], plan["cost_range_usd"]
    reached = precision(cost["p10"], cost["p90"])
    assert sample["mode"] == "auto" and sample["precision"]["reached"] == pytest.approx(reached, abs=1e-6)
    assert len(sample["rounds"]) >= 2 and sample["rounds"][0]["jobs"] == 20  # as `--sample 20` starts
    if sample["precision"]["met"]:
        assert sample["stop_reason"] == "precision" and reached <= 0.08
    else:  # the batch ran out first (120 jobs)
        assert sample["stop_reason"] == "batch" and sample["jobs"] == 120
    assert plan["method"] == "sample" and plan["models"][0]["output_fit"].endswith(
        f"from {sample['answers']} sample answer(s)"
    )
    # the journal holds exactly the answers and the spend the plan claims, and the simulator
    # was asked each of them once
    runs, answers, spent = _sampled(tmp_path / ".anvil")
    assert runs == set(sample["run_ids"]) and len(runs) == len(sample["rounds"])
    assert answers == sample["answers"] == sample["rounds"][-1]["answers"] == sample["jobs"]
    assert spent == pytest.approx(sample["spent_usd"], abs=1e-6)
    assert paid["requests"] == answers and paid["paid_duplicates"] == 0
    # each round's state on stderr; the text names the same precision
    for i in range(1, len(sample["rounds"]) + 1):
        assert f"sample round {i}: " in proc.stderr
    assert f"precision: cost +/-{reached:.1%}" in again.stdout
    assert f"sample: {sample['jobs']} job(s) in {len(sample['rounds'])} round(s)" in again.stdout


@pytest.mark.slow  # two sample runs
def test_a_precision_the_budget_cannot_buy_stops_and_says_what_more_would_cost(tmp_path: Path) -> None:
    cfg = SimConfig(seed=9, latency_ms=10, output_tokens=110, output_tokens_spread=0.5)
    with SimServer(cfg).start_thread() as sim:
        batch, config = _setup(tmp_path, sim, 400)
        proc = invoke_cli(
            "plan",
            str(batch),
            "--config",
            str(config),
            "--sample",
            "auto",
            "--precision",
            "0.05",
            "--sample-max-usd",
            "0.02",
            cwd=tmp_path,
        )
    assert proc.returncode == 0, proc.stderr
    assert "the target of +/-5.0% was not reached (--sample-max-usd is spent" in proc.stdout
    more = re.search(r"would take ~([\d,]+) more answer\(s\), ~\$([\d.]+) more", proc.stdout)
    assert more is not None, proc.stdout
    _runs, answers, spent = _sampled(tmp_path / ".anvil")
    assert spent <= 0.02 and int(more.group(1).replace(",", "")) > 0
    assert float(more.group(2)) == pytest.approx(
        int(more.group(1).replace(",", "")) * spent / answers, rel=0.01
    )
    assert f"{answers} answer(s) for ${spent:.4f} (cap $0.02)" in proc.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--sample", "abc"), "'abc' is neither a number of jobs (0 to 1000) nor 'auto'"),
        (("--sample", "1001"), "'1001' is neither"),
        (("--sample", "auto", "--precision", "0"), "0 is not a share over 0 and under 1"),
        (("--sample", "auto", "--precision", "1"), "1 is not a share over 0 and under 1"),
        (("--sample", "20", "--precision", "0.1"), "needs --sample auto"),
    ],
)
def test_bad_sample_or_precision_is_a_usage_error(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b"])
    proc = invoke_cli("plan", str(batch), *args, cwd=tmp_path)
    assert proc.returncode == ExitCode.BAD_INPUT
    assert says in " ".join(proc.stderr.split()) and "Traceback" not in proc.stderr
    assert not (tmp_path / ".anvil").exists()  # nothing run, nothing written


@pytest.mark.slow  # one sample run
def test_a_stop_between_rounds_keeps_what_was_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    cfg = SimConfig(seed=9, latency_ms=10, output_tokens=110, output_tokens_spread=0.5)
    with SimServer(cfg).start_thread() as sim:
        batch, config = _setup(tmp_path, sim, 200)
        settings = load_settings(config, env={})
        jobs = list(load_batch(batch))
        signals = SignalState()  # counted, not installed: the test presses Ctrl-C itself
        said: list[str] = []

        def plan_of(outcome: SampleOutcome) -> Plan:
            signals.count += 1  # Ctrl-C while the first round's plan is made
            fits = fit_models(outcome.answers, "sample")
            return make_plan(jobs, settings, None, output_model(settings, False), fits)

        outcome, plan, auto = sample_auto(
            settings,
            batch,
            jobs,
            target=0.06,
            cap_usd=1.0,
            simulate=False,
            allow_tools=False,
            plan_of=plan_of,
            say=said.append,
            signals=signals,
        )
        asked = sim.stats()["requests"]
    assert auto.stopped_early and outcome.stop_reason == "interrupted" and len(auto.run_ids) == 1
    assert len(outcome.answers) == asked == 20 and plan.models[0].output_source == "sample"
    assert auto.reached == pytest.approx(precision(plan.cost_range_usd["p10"], plan.cost_range_usd["p90"]))
    assert auto.more is not None and auto.more[0] > 0  # what the target would still take
    lines = auto_lines(outcome, auto)
    assert "stopped early: this plan is from the 20 answer(s) measured so far" in lines
    assert said[-1].startswith("sample round 1: 20 answer(s) in all") and "next:" not in said[-1]
