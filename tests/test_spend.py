"""Where the money went (`anvil status RUN --by metadata.team`), from real runs on the simulator:
the breakdowns add up to the journal's totals, and the savings line prices the result cache,
prompt caching and the Batches discount against list price."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import invoke_cli, run_cli, write_config, write_jobs

N_JOBS = 30
LONG_SYSTEM = "You review code carefully and answer in one paragraph. " * 120  # over the caching threshold


def _jobs(**extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": f"job-{i:03d}",
            "prompt": f"review change {i}",
            "model": "claude-haiku-4-5" if i % 3 else "claude-sonnet-4-6",
            "max_tokens": 200,
            "metadata": {"team": ["search", "ads", "infra"][i % 3]} if i % 5 else {},
            **extra,
        }
        for i in range(N_JOBS)
    ]


def _status(tmp_path: Path, config: Path, *args: str) -> dict[str, Any]:
    proc = invoke_cli("status", *args, "--json", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_cost_by_model_and_metadata_adds_up_and_the_cache_saving_is_priced(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=2, latency_ms=10, output_tokens=80)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _jobs())
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        assert run_cli("run", str(batch), "--config", str(config), cwd=tmp_path).returncode == ExitCode.OK
        first = _status(tmp_path, config, "--by", "metadata.team")
        again = run_cli("run", str(batch), "--config", str(config), "--fresh", cwd=tmp_path)
        assert again.returncode == ExitCode.OK, again.stderr
        cached = _status(tmp_path, config)
        human = invoke_cli("status", "--by", "metadata.team", "--config", str(config), cwd=tmp_path).stdout

    spend = first["spend"]
    paid = first["cost_usd"]
    assert sum(m["cost_usd"] for m in spend["by_model"]) == _approx(paid)
    assert {m["model"] for m in spend["by_model"]} == {"claude-haiku-4-5", "claude-sonnet-4-6"}
    groups = {g["value"]: g for g in spend["by"]["groups"]}
    assert set(groups) == {"search", "ads", "infra", "(none)"} and groups["(none)"]["jobs"] == 6
    assert sum(g["cost_usd"] for g in groups.values()) == _approx(paid)
    top = spend["top_jobs"]
    assert len(top) == 10 and top == sorted(top, key=lambda j: -j["cost_usd"])
    assert spend["savings"]["result_cache_jobs"] == 0 and spend["savings"]["paid_usd"] == _approx(paid)

    # the same batch again: every answer from the result cache, nothing paid, all of it saved
    saved = cached["spend"]["savings"]
    assert cached["cost_usd"] == 0 and saved["result_cache_jobs"] == N_JOBS
    assert saved["result_cache_usd"] == _approx(paid) and saved["list_price_usd"] == _approx(paid)
    assert "where the money went" in human and "by metadata.team" in human and "saved $" in human


def test_prompt_caching_and_batches_savings(tmp_path: Path) -> None:
    sim_cfg = SimConfig(seed=3, latency_ms=10, output_tokens=80, batch_seconds_per_request=0.001)
    with SimServer(sim_cfg).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _jobs(system=LONG_SYSTEM))
        fast = {"poll_interval_s": 0.05}
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, cache={"enabled": False}, batches=fast)
        run = run_cli("run", str(batch), "--config", str(config), "--mode", "batches", cwd=tmp_path)
        assert run.returncode == ExitCode.OK, run.stderr
        st = _status(tmp_path, config)
    saved = st["spend"]["savings"]
    assert saved["batches_usd"] == _approx(saved["paid_usd"])  # half price: list is twice what was paid
    assert saved["prompt_caching_usd"] > 0  # the shared system prompt was read from the cache
    assert saved["list_price_usd"] == _approx(saved["paid_usd"] + saved["saved_usd"])


def test_a_bad_by_key_is_a_usage_error(tmp_path: Path) -> None:
    proc = invoke_cli("status", "--by", "metadata.", cwd=tmp_path)
    assert proc.returncode == ExitCode.BAD_INPUT and "metadata.KEY" in proc.stderr


def _approx(value: float) -> Any:
    return pytest.approx(value, abs=1e-5)
