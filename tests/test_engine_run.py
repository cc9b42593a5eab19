"""`anvil run` end to end: the real SDK over HTTP to the simulator, worker processes, journal."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from anvil_cli.engine.journal.store import Journal
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.sim.digest import messages_digest
from tests.engine_support import (
    journal_query,
    read_results,
    run_cli,
    run_inprocess,
    write_config,
    write_jobs,
    write_jsonl_batch,
)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(seed=1)).start_thread() as server:
        yield server


def _ok(results: list[dict[str, object]]) -> bool:
    return all(r["status"] == "succeeded" for r in results)


def test_runs_a_batch_and_writes_results_in_batch_order(tmp_path: Path, sim: SimServer) -> None:
    prompts = [f"question {i}" for i in range(40)]
    batch = write_jsonl_batch(tmp_path / "b.jsonl", prompts)
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    out = tmp_path / "out.jsonl"
    report = run_inprocess(config, batch, out)
    assert report.exit_code == ExitCode.OK
    results = read_results(out)
    assert [r["id"] for r in results] == [f"job-{i:04d}" for i in range(40)]
    for prompt, r in zip(prompts, results, strict=True):
        digest = messages_digest([{"role": "user", "content": prompt}])
        assert str(r["output"]).startswith(f"sim:{digest}")
        assert r["status"] == "succeeded" and r["error"] is None and r["attempts"] == 1
        assert set(r) >= {
            "id",
            "status",
            "model",
            "output",
            "stop_reason",
            "usage",
            "attempts",
            "latency_s",
            "error",
        }
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / ".anvil" / "journal.sqlite").st_mode) == 0o600
    assert sim.stats()["paid_duplicates"] == 0


@pytest.mark.parametrize("code", ["429", "408", "409", "500", "503", "529"])
def test_every_retryable_status_is_retried(tmp_path: Path, sim: SimServer, code: str) -> None:
    batch = write_jobs(
        tmp_path / "b.jsonl", [{"id": "a", "prompt": f"@sim{{fail={code}x2, retry_after=0}} hi"}]
    )
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    out = tmp_path / "out.jsonl"
    report = run_inprocess(config, batch, out)
    assert report.exit_code == ExitCode.OK, report.summary
    (r,) = read_results(out)
    assert r["status"] == "succeeded" and r["attempts"] == 3


def test_dropped_connections_are_retried(tmp_path: Path, sim: SimServer) -> None:
    batch = write_jobs(tmp_path / "b.jsonl", [{"id": "a", "prompt": "@sim{drop=2} hi"}])
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    out = tmp_path / "out.jsonl"
    assert run_inprocess(config, batch, out).exit_code == ExitCode.OK
    assert read_results(out)[0]["attempts"] == 3


def test_retry_after_is_honoured(tmp_path: Path, sim: SimServer) -> None:
    batch = write_jobs(tmp_path / "b.jsonl", [{"id": "a", "prompt": "@sim{fail=429x1, retry_after=1} hi"}])
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    out = tmp_path / "out.jsonl"
    assert run_inprocess(config, batch, out).exit_code == ExitCode.OK
    with Journal.open(tmp_path / ".anvil") as journal:
        run = journal.latest_run()
        assert run is not None
        row = journal.job_by_id(run.id, "a")
    assert row is not None
    log = row["attempt_log"]
    assert log[0]["status_code"] == 429 and log[0]["wait_s"] >= 1.0
    assert row["latency_s"] >= 1.0


def test_permanent_errors_fail_the_job_with_the_api_message(tmp_path: Path, sim: SimServer) -> None:
    jobs = [
        {"id": "bad", "prompt": "@sim{status=400} nope"},
        {"id": "missing", "prompt": "@sim{status=404} nope"},
        {"id": "good", "prompt": "fine"},
    ]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    out = tmp_path / "out.jsonl"
    report = run_inprocess(config, batch, out)
    assert report.exit_code == ExitCode.JOBS_FAILED
    by_id = {r["id"]: r for r in read_results(out)}
    assert by_id["bad"]["status"] == "failed" and by_id["bad"]["attempts"] == 1
    assert by_id["bad"]["error"]["status_code"] == 400
    assert by_id["bad"]["error"]["type"] == "invalid_request_error" and by_id["bad"]["error"]["message"]
    assert by_id["missing"]["error"]["status_code"] == 404
    assert by_id["good"]["status"] == "succeeded"


def test_exhausted_retries_fail_the_job(tmp_path: Path, sim: SimServer) -> None:
    batch = write_jobs(tmp_path / "b.jsonl", [{"id": "a", "prompt": "@sim{status=529} hi"}])
    config = write_config(tmp_path / "anvil.yaml", sim.base_url, retries={"max_attempts": 3})
    out = tmp_path / "out.jsonl"
    assert run_inprocess(config, batch, out).exit_code == ExitCode.JOBS_FAILED
    (r,) = read_results(out)
    assert r["attempts"] == 3 and r["error"]["status_code"] == 529


@pytest.mark.parametrize("directive", ["status=401", "status=403", "status=429spend"])
def test_auth_or_spend_cap_stops_the_run_with_exit_3(tmp_path: Path, sim: SimServer, directive: str) -> None:
    jobs = [{"id": "first", "prompt": f"@sim{{{directive}}} x"}] + [
        {"id": f"later-{i}", "prompt": f"later {i}", "priority": "low"} for i in range(30)
    ]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    config = write_config(
        tmp_path / "anvil.yaml",
        sim.base_url,
        scaling={"workers": 1, "max_agents": 1, "max_concurrent_jobs": 1},
    )
    out = tmp_path / "out.jsonl"
    report = run_inprocess(config, batch, out)
    assert report.exit_code == ExitCode.STOPPED
    assert report.message
    results = {r["id"]: r for r in read_results(out)}
    assert results["first"]["status"] == "pending"  # resumable, not failed
    assert sum(r["status"] == "pending" for r in results.values()) >= 25


def test_priority_order_with_one_agent(tmp_path: Path, sim: SimServer) -> None:
    prios = ["low", "normal", "critical", "high", "normal", "critical", "low", "high"]
    jobs = [{"id": f"j{i}", "prompt": f"p{i}", "priority": p} for i, p in enumerate(prios)]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    config = write_config(
        tmp_path / "anvil.yaml",
        sim.base_url,
        scaling={"workers": 1, "max_agents": 1, "max_concurrent_jobs": 1},
    )
    assert run_inprocess(config, batch).exit_code == ExitCode.OK
    with Journal.open(tmp_path / ".anvil") as journal:
        run = journal.latest_run()
        assert run is not None
        order = [row["id"] for row in sorted(journal.iter_results(run.id), key=lambda r: r["finished_at"])]
    assert order == ["j2", "j5", "j3", "j7", "j1", "j4", "j0", "j6"]


def test_large_batch_with_a_small_ready_queue(tmp_path: Path, sim: SimServer) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(400)])
    config = write_config(tmp_path / "anvil.yaml", sim.base_url, scaling={"queue_size": 8})
    out = tmp_path / "out.jsonl"
    assert run_inprocess(config, batch, out).exit_code == ExitCode.OK
    results = read_results(out)
    assert len(results) == 400 and _ok(results)
    assert sim.stats()["paid_duplicates"] == 0


def test_rerun_of_a_finished_batch_sends_nothing(tmp_path: Path, sim: SimServer) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(10)])
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    first = run_inprocess(config, batch)
    sent = sim.stats()["requests"]
    second = run_inprocess(config, batch, tmp_path / "again.jsonl")
    assert second.run_id == first.run_id and second.exit_code == ExitCode.OK
    assert sim.stats()["requests"] == sent
    assert len(read_results(tmp_path / "again.jsonl")) == 10


def test_retry_failed_requeues_permanent_failures(tmp_path: Path, sim: SimServer) -> None:
    batch = write_jobs(
        tmp_path / "b.jsonl", [{"id": "x", "prompt": "@sim{fail=400x1} once"}, {"id": "y", "prompt": "y"}]
    )
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    assert run_inprocess(config, batch).exit_code == ExitCode.JOBS_FAILED
    report = run_inprocess(config, batch, tmp_path / "out.jsonl", retry_failed=True)
    assert report.exit_code == ExitCode.OK
    assert _ok(read_results(tmp_path / "out.jsonl"))


def test_fresh_starts_a_new_run(tmp_path: Path, sim: SimServer) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b"])
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    first = run_inprocess(config, batch)
    second = run_inprocess(config, batch, fresh=True)
    assert first.run_id != second.run_id


def test_changed_batch_refuses_to_resume(tmp_path: Path, sim: SimServer) -> None:
    from anvil_cli.errors import UsageError

    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b"])
    config = write_config(tmp_path / "anvil.yaml", sim.base_url, budget={"max_usd": 0.0000001})
    assert run_inprocess(config, batch).exit_code == ExitCode.STOPPED
    write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b", "c"])
    with pytest.raises(UsageError, match="--fresh"):
        run_inprocess(config, batch)


def test_header_adaptation_converges_to_the_server_limit(tmp_path: Path) -> None:
    # the server allows 1,200/min with a burst of 5; Anvil is told 12,000/min with a burst of 50
    with SimServer(SimConfig(rpm=1200, burst=5, seed=3)).start_thread() as server:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(80)])
        config = write_config(
            tmp_path / "anvil.yaml",
            server.base_url,
            rate_limits={"default": {"requests_per_minute": 12000, "burst_size": 50}},
            retries={"max_attempts": 20, "backoff_base_s": 0.05, "backoff_max_s": 1.0},
        )
        out = tmp_path / "out.jsonl"
        assert run_inprocess(config, batch, out).exit_code == ExitCode.OK
        stats = server.stats()
    assert _ok(read_results(out))
    with Journal.open(tmp_path / ".anvil") as journal:
        run = journal.latest_run()
        assert run is not None
        adapted = journal.events(run.id, "limit_adapted")
    assert adapted and adapted[0]["server_per_min"] == 1200
    # without adaptation nearly every request past the burst would be refused at first
    assert stats["rate_limited"] < 0.35 * stats["requests"]


def test_breaker_opens_half_opens_and_closes(tmp_path: Path, sim: SimServer) -> None:
    jobs = [{"id": f"f{i}", "prompt": f"@sim{{fail=529x2, retry_after=0}} f{i}"} for i in range(3)]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    config = write_config(
        tmp_path / "anvil.yaml",
        sim.base_url,
        scaling={"workers": 1, "max_agents": 1, "max_concurrent_jobs": 1},
        circuit_breaker={"failure_threshold": 2, "recovery_timeout_s": 0.3, "half_open_probes": 1},
    )
    out = tmp_path / "out.jsonl"
    assert run_inprocess(config, batch, out).exit_code == ExitCode.OK
    with Journal.open(tmp_path / ".anvil") as journal:
        run = journal.latest_run()
        assert run is not None
        states = [e["state"] for e in journal.events(run.id, "breaker")]
    assert states[:3] == ["open", "half_open", "closed"] or states[:2] == ["open", "half_open"]
    assert "closed" in states
    assert _ok(read_results(out))


def test_budget_stops_with_exit_3_then_resumes_with_a_higher_cap(tmp_path: Path, sim: SimServer) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(30)])
    # each haiku call with max_tokens 64 costs at most ~0.00035 USD: the cap allows a handful
    config = write_config(tmp_path / "anvil.yaml", sim.base_url, budget={"max_usd": 0.002})
    out = tmp_path / "out.jsonl"
    report = run_inprocess(config, batch, out)
    assert report.exit_code == ExitCode.STOPPED
    spent = report.summary["run_cost_usd"]
    assert 0 < spent <= 0.002
    done = [r for r in read_results(out) if r["status"] == "succeeded"]
    assert 0 < len(done) < 30
    config = write_config(tmp_path / "anvil.yaml", sim.base_url, budget={"max_usd": 1.0})
    report = run_inprocess(config, batch, out)
    assert report.exit_code == ExitCode.OK
    assert _ok(read_results(out))
    assert sim.stats()["paid_duplicates"] == 0


def test_secrets_never_reach_files_or_output(tmp_path: Path, sim: SimServer) -> None:
    secret = "sk-ant-SECRET-do-not-log-9f8e7d"
    batch = write_jobs(
        tmp_path / "b.jsonl", [{"id": "a", "prompt": "@sim{status=401} x"}, {"id": "b", "prompt": "b"}]
    )
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    env_out = tmp_path / "out.jsonl"
    proc = run_cli(
        "run", str(batch), "--config", str(config), "-o", str(env_out), cwd=tmp_path, secret=secret
    )
    assert proc.returncode == ExitCode.STOPPED, proc.stderr
    for path in [env_out, *(tmp_path / ".anvil").iterdir()]:
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in proc.stdout + proc.stderr


def test_cli_json_summary_and_exit_code(tmp_path: Path, sim: SimServer) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b", "c"])
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    proc = run_cli("run", str(batch), "--config", str(config), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["counts"] == {"total": 3, "succeeded": 3, "failed": 0, "pending": 0}
    assert set(summary["latency_s"]) == {"p50", "p95", "p99"}
    assert summary["jobs_per_s"] > 0 and "errors_by_type" in summary and "tokens" in summary


def test_bad_batch_exits_2_and_writes_nothing(tmp_path: Path, sim: SimServer) -> None:
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"id": "a", "prompt": "x", "model": "claude-haiku-4-5", "max_tokens": 64}\n{oops\n')
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    proc = run_cli("run", str(batch), "--config", str(config), cwd=tmp_path)
    assert proc.returncode == ExitCode.BAD_INPUT
    assert "b.jsonl:2" in proc.stderr
    assert not (tmp_path / ".anvil").exists()
    assert sim.stats()["requests"] == 0


def test_long_requests_are_streamed_and_a_mid_stream_error_is_retried(tmp_path: Path, sim: SimServer) -> None:
    jobs = [
        {"id": "long", "prompt": "write a lot", "max_tokens": 30000},
        {"id": "flaky", "prompt": "@sim{stream_error=1} write a lot", "max_tokens": 30000},
    ]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    out = tmp_path / "out.jsonl"
    assert run_inprocess(config, batch, out).exit_code == ExitCode.OK
    by_id = {r["id"]: r for r in read_results(out)}
    digest = messages_digest([{"role": "user", "content": "write a lot"}])
    assert str(by_id["long"]["output"]).startswith(f"sim:{digest}") and by_id["long"]["attempts"] == 1
    assert by_id["flaky"]["attempts"] == 2 and by_id["flaky"]["status"] == "succeeded"
    assert sim.stats()["stream_errors"] == 1


def test_agents_scale_down_to_what_a_binding_rate_limit_can_feed(tmp_path: Path) -> None:
    # A burst of 50 (45 usable after the 10% reserve): while the limit binds, the bucket holds
    # under one request of 45, read as ~98% in use, well past the 80% that lets the scaler apply
    # Little's law. (With a burst of 5 it read 75-90% on a loaded machine, and a short run could
    # end without one tick above 80%.) 90 jobs: about 4 s rate-bound after the burst.
    with SimServer(SimConfig(rpm=600, burst=50, latency_ms=100, seed=9)).start_thread() as server:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(90)])
        config = write_config(
            tmp_path / "anvil.yaml",
            server.base_url,
            scaling={"workers": 1, "max_agents": 20, "max_concurrent_jobs": 20, "min_agents": 2},
            rate_limits={"default": {"requests_per_minute": 600, "burst_size": 50}},
        )
        assert run_inprocess(config, batch).exit_code == ExitCode.OK
    with Journal.open(tmp_path / ".anvil") as journal:
        run = journal.latest_run()
        assert run is not None
        scaled = journal.events(run.id, "scaled")
    assert scaled, "the agent count never changed"
    first = scaled[0]
    # while the rate limit bound (>= scale_up_threshold), Little's law cut the count: 10 calls/s x
    # ~0.1 s a call x 2 headroom is a few agents, not 20. The exact figure follows the call time
    # this machine measured (test_scaler checks the arithmetic), so only the cut is checked here.
    assert first["from"] == 20 and first["limiter_pct"] >= 80
    assert 2 <= first["to"] < 20


def test_a_job_larger_than_the_pipe_reaches_its_worker_whole(tmp_path: Path, sim: SimServer) -> None:
    """A job of 300 KB is sent to its worker in pieces (the pipe holds 64 KB). uvloop (the `fast`
    extra) makes a pipe it watches non-blocking, so a worker reading its inbox got EAGAIN partway
    through such a message and died; its jobs then ran again on a replacement."""
    prompts = [f"{i} " + "a long document line. " * 14_000 for i in range(4)]
    batch = write_jsonl_batch(tmp_path / "b.jsonl", prompts)
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    out = tmp_path / "out.jsonl"
    report = run_inprocess(config, batch, out)
    assert report.exit_code == ExitCode.OK, report.summary
    assert _ok(read_results(out))
    rows = journal_query(tmp_path / ".anvil", "SELECT COUNT(*) FROM events WHERE kind = 'worker_died'")
    assert rows == [(0,)]
