"""The result cache: identical requests answered locally at zero cost, across runs."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.engine.outcomes import Usage
from anvil_cli.engine.result_cache import CachedResult, ResultCache, request_key
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import read_results, run_cli, run_inprocess, write_config, write_jobs


def test_key_covers_model_parameters_and_messages() -> None:
    base = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    assert request_key(base) == request_key(dict(reversed(list(base.items()))))
    assert request_key(base) != request_key({**base, "model": "n"})
    assert request_key(base) != request_key({**base, "max_tokens": 11})
    assert request_key(base) != request_key({**base, "stop_sequences": ["x"]})
    assert request_key(base) != request_key({**base, "messages": [{"role": "user", "content": "ho"}]})


def test_store_is_private_and_round_trips(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "state")
    usage = Usage(input_tokens=1)
    cache.put("k", CachedResult("m", "out", "end_turn", usage, 0.5))
    assert cache.get("k") == CachedResult("m", "out", "end_turn", usage, 0.5)
    assert cache.get("other") is None
    cache.close()
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "cache.sqlite").st_mode) == 0o600


def test_second_run_is_answered_from_the_cache_at_zero_cost(tmp_path: Path) -> None:
    jobs = [{"id": f"j{i}", "prompt": f"question {i}"} for i in range(10)]
    jobs.append({"id": "bad", "prompt": "@sim{fail=400x1} fails once"})
    with SimServer(SimConfig(seed=1)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", jobs)
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        first = run_inprocess(config, batch, tmp_path / "one.jsonl")
        assert first.exit_code == ExitCode.JOBS_FAILED and first.summary["run_cost_usd"] > 0
        sent = sim.stats()["requests"]
        second = run_inprocess(config, batch, tmp_path / "two.jsonl", fresh=True)
        # only the failed job (failures are never cached) is sent again
        assert sim.stats()["requests"] == sent + 1
    assert second.exit_code == ExitCode.OK
    assert second.summary["cache_hits"] == 10 and first.summary["cache_hits"] == 0
    one = {r["id"]: r for r in read_results(tmp_path / "one.jsonl")}
    two = {r["id"]: r for r in read_results(tmp_path / "two.jsonl")}
    for i in range(10):
        a, b = one[f"j{i}"], two[f"j{i}"]
        assert (b["output"], b["model"], b["usage"]) == (a["output"], a["model"], a["usage"])
        assert b["cost_usd"] == 0 and b["attempts"] == 0
    assert second.summary["run_cost_usd"] == two["bad"]["cost_usd"] > 0


def test_no_cache_flag_bypasses_the_cache(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=1)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", [{"id": "a", "prompt": "hello"}])
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        assert run_inprocess(config, batch).exit_code == ExitCode.OK
        proc = run_cli(
            "run", str(batch), "--config", str(config), "--fresh", "--no-cache", "-q", cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        assert sim.stats()["requests"] == 2


def test_a_cache_that_cannot_store_is_said_once_and_never_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anvil_cli.engine.journal.store import Journal
    from tests.engine_support import write_jsonl_batch

    original = ResultCache.put_many

    def refusing(self: ResultCache, entries: list[Any]) -> str | None:
        with self._lock:
            self._db.execute("PRAGMA query_only = ON")  # every write now fails, as on a full disk
        return original(self, entries)

    monkeypatch.setattr(ResultCache, "put_many", refusing)
    with SimServer(SimConfig(seed=6)).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(6)])
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        out = tmp_path / "out.jsonl"
        report = run_inprocess(config, batch, out)
    assert report.exit_code == 0 and all(r["status"] == "succeeded" for r in read_results(out))
    with Journal.open(tmp_path / ".anvil") as journal:
        (event,) = journal.events(report.run_id, "cache_error")
    assert "readonly" in event["message"] or "read-only" in event["message"]
