"""A journal that cannot be written mid-run (a full disk): the run stops at once with exit 3 and
a clear message, keeps everything committed, and the same command resumes it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.outcomes import JobResult
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import read_results, run_inprocess, write_config, write_jsonl_batch

N_JOBS = 30


def test_a_full_disk_stops_the_run_resumably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Journal.record_result
    recorded: list[int] = []

    def fill_up_after_ten(self: Journal, run_id: str, r: JobResult, **kw: Any) -> None:
        if len(recorded) >= 10:
            raise sqlite3.OperationalError("database or disk is full")
        original(self, run_id, r, **kw)
        recorded.append(r.seq)

    with SimServer(SimConfig(seed=8, latency_ms=20)).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(N_JOBS)])
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, scaling={"max_agents": 4})
        with monkeypatch.context() as patch:
            patch.setattr(Journal, "record_result", fill_up_after_ten)
            stopped = run_inprocess(config, batch)
        assert stopped.exit_code == ExitCode.STOPPED
        assert stopped.message is not None and "journal cannot be written (database or disk is full)" in (
            stopped.message
        )
        with Journal.open(tmp_path / ".anvil") as journal:
            # what was committed is kept: the results before the pass whose transaction failed (a
            # pass records every result that has arrived, so on a loaded machine the 10th may share
            # the failing transaction and be rolled back with it)
            assert 10 - 4 <= journal.counts(stopped.run_id)["succeeded"] <= 10
        out = tmp_path / "out.jsonl"
        resumed = run_inprocess(config, batch, out)
        paid_twice = sim.stats()["paid_duplicates"]
    assert resumed.exit_code == ExitCode.OK and resumed.run_id == stopped.run_id
    results = read_results(out)
    assert len(results) == N_JOBS and all(r["status"] == "succeeded" for r in results)
    # paid twice: the calls in flight when the disk filled (at most the 4 agents), the results
    # rolled back with the failing pass (at most 4 more), and the one refused
    assert paid_twice <= 4 + 4 + 1


def _billed_usd(sim: SimServer) -> float:
    """What the simulated API answered, at claude-haiku-4-5's prices ($1 / $5 per million)."""
    stats = sim.stats()
    return (stats["input_tokens"] * 1.0 + stats["output_tokens"] * 5.0) / 1e6


def test_calls_the_journal_lost_still_count_so_the_budget_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight agents have calls in flight when the journal fails; those are paid but journaled
    nowhere. The resume counts them (the governor's settled spend and reservations, kept in the
    state dir), so the whole run's bill stays under the cap; without them it would pass it by
    what they cost."""
    cap = 0.05  # ~25 of the 80 jobs at ~$0.002 each: the resume stops on the budget
    original = Journal.record_result
    recorded: list[int] = []

    def fill_up_after_ten(self: Journal, run_id: str, r: JobResult, **kw: Any) -> None:
        if len(recorded) >= 10:
            raise sqlite3.OperationalError("database or disk is full")
        original(self, run_id, r, **kw)
        recorded.append(r.seq)

    sim_config = SimConfig(seed=9, latency_ms=60, output_tokens=400)
    with SimServer(sim_config).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(80)], max_tokens=450)
        config = write_config(
            tmp_path / "anvil.yaml", sim.base_url, scaling={"max_agents": 8}, budget={"max_usd": cap}
        )
        with monkeypatch.context() as patch:
            patch.setattr(Journal, "record_result", fill_up_after_ten)
            stopped = run_inprocess(config, batch)
        assert stopped.exit_code == ExitCode.STOPPED and stopped.summary["stop_reason"] == "journal_error"
        lost = stopped.summary["unjournaled_usd"]
        assert lost > 0 and "could not be journaled, kept for the resume to count" in (stopped.message or "")
        with Journal.open(tmp_path / ".anvil") as journal:  # the stop's counts are the journal's
            assert stopped.summary["counts"]["succeeded"] == journal.counts(stopped.run_id)["succeeded"]
            journaled_before = journal.totals(stopped.run_id)["cost_usd"]
        assert journaled_before + lost >= _billed_usd(sim) - 1e-9  # nothing paid is uncounted
        resumed = run_inprocess(config, batch)
        billed = _billed_usd(sim)
    assert resumed.run_id == stopped.run_id and resumed.exit_code == ExitCode.STOPPED
    assert resumed.summary["stop_reason"] == "budget"
    assert billed <= cap + 1e-9  # the cap held across the failure
    assert any("could not record when it failed counts toward" in n for n in resumed.notes)
    with Journal.open(tmp_path / ".anvil") as journal:
        spent = journal.totals(resumed.run_id)["cost_usd"]
        assert len(journal.events(resumed.run_id, "unjournaled_spend")) == 1  # counted once
    assert billed - 1e-9 <= spent <= cap + 1e-9
