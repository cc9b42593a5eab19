"""A journal that cannot be written mid-run (a full disk): the run stops at once with exit 3 and
a clear message, keeps everything committed, and the same command resumes it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.engine.journal import Journal
from anvil_cli.exitcodes import ExitCode
from anvil_cli.records import JobResult
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
