"""Crashes and signals: kill -9 of a worker or of the conductor, Ctrl-C, then resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import anvil_cmd, cli_env, read_results, run_cli, write_config, write_jsonl_batch

N_JOBS = 60
AGENTS = 8


@pytest.fixture
def slow_sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(latency_ms=150, seed=5)).start_thread() as server:
        yield server


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll a condition on real progress (bounded), never a fixed sleep."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)  # sleep-ok: polling for real progress, bounded by a deadline


def _journal_query(state_dir: Path, sql: str) -> list[tuple[object, ...]]:
    path = state_dir / "journal.sqlite"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []


def _succeeded(state_dir: Path) -> int:
    rows = _journal_query(state_dir, "SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'")
    return int(rows[0][0]) if rows else 0


def _worker_pids(state_dir: Path) -> list[int]:
    rows = _journal_query(state_dir, "SELECT data_json FROM events WHERE kind = 'worker_started'")
    import json

    return [int(json.loads(str(r[0]))["pid"]) for r in rows]


def _arrived(sim: SimServer) -> int:
    """Requests the server has received: answered ones plus those it is still answering."""
    stats = sim.stats()
    return int(stats["requests"]) + int(stats["in_flight"])


def _start(tmp_path: Path, sim: SimServer, **cfg: object) -> tuple[subprocess.Popen[str], Path, Path]:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(N_JOBS)])
    config = write_config(
        tmp_path / "anvil.yaml",
        sim.base_url,
        scaling={"workers": 2, "max_agents": AGENTS, "max_concurrent_jobs": AGENTS},
        **cfg,
    )
    proc = subprocess.Popen(
        anvil_cmd("run", str(batch), "--config", str(config)),
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, batch, config


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    try:
        _out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def test_kill_9_of_a_worker_loses_nothing(tmp_path: Path, slow_sim: SimServer) -> None:
    proc, _batch, config = _start(tmp_path, slow_sim)
    state = tmp_path / ".anvil"
    _wait_for(lambda: _succeeded(state) >= 10)
    victim = _worker_pids(state)[0]
    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)
    code, err = _finish(proc)
    assert code == ExitCode.OK, err
    out = tmp_path / "out.jsonl"
    assert run_cli("export", "-o", str(out), "--config", str(config), cwd=tmp_path).returncode == 0
    results = read_results(out)
    assert len(results) == N_JOBS and all(r["status"] == "succeeded" for r in results)
    died = _journal_query(state, "SELECT COUNT(*) FROM events WHERE kind = 'worker_died'")
    assert died[0][0] >= 1
    started = _journal_query(state, "SELECT at FROM events WHERE kind = 'worker_started' ORDER BY at")
    assert len(started) >= 3  # a replacement started...
    assert any(killed_at <= float(str(at)) <= killed_at + 5 for (at,) in started)  # ...within 5 s


def test_kill_9_of_the_conductor_then_resume_runs_each_job_once(tmp_path: Path, slow_sim: SimServer) -> None:
    proc, batch, config = _start(tmp_path, slow_sim)
    state = tmp_path / ".anvil"
    _wait_for(lambda: _succeeded(state) >= 15)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    workers = _worker_pids(state)
    _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), timeout_s=5)
    sent_at_kill = _arrived(slow_sim)
    time.sleep(0.5)  # sleep-ok: observing that nothing keeps calling the API after the kill
    assert _arrived(slow_sim) <= sent_at_kill
    out = tmp_path / "out.jsonl"
    resumed = run_cli("run", str(batch), "--config", str(config), "-o", str(out), cwd=tmp_path)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    results = read_results(out)
    assert sorted(r["id"] for r in results) == sorted(f"job-{i:04d}" for i in range(N_JOBS))
    assert all(r["status"] == "succeeded" for r in results)
    assert slow_sim.stats()["paid_duplicates"] <= AGENTS


def test_ctrl_c_stops_cleanly_then_resume_completes(tmp_path: Path, slow_sim: SimServer) -> None:
    proc, batch, config = _start(tmp_path, slow_sim)
    state = tmp_path / ".anvil"
    _wait_for(lambda: _succeeded(state) >= 10)
    proc.send_signal(signal.SIGINT)
    code, err = _finish(proc, timeout=30)
    assert code == ExitCode.INTERRUPTED, err
    assert "resume" in err
    done_before = _succeeded(state)
    assert done_before < N_JOBS
    status = run_cli("status", "--json", "--config", str(config), cwd=tmp_path)
    import json

    resume = json.loads(status.stdout)["resume_command"]
    assert resume.startswith("anvil run ") and "--config" in resume  # said the way it was started
    out = tmp_path / "out.jsonl"
    resumed = run_cli("run", str(batch), "--config", str(config), "-o", str(out), cwd=tmp_path)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    results = read_results(out)
    assert len(results) == N_JOBS and all(r["status"] == "succeeded" for r in results)
    assert slow_sim.stats()["paid_duplicates"] == 0  # a clean stop lets calls in flight finish


def test_second_ctrl_c_aborts_at_once(tmp_path: Path) -> None:
    with SimServer(SimConfig(latency_ms=3000, seed=5)).start_thread() as sim:
        proc, _batch, _config = _start(tmp_path, sim, run={"grace_period_s": 60, "progress_interval_s": 60})
        state = tmp_path / ".anvil"
        _wait_for(lambda: sim.stats()["in_flight"] >= AGENTS)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)  # sleep-ok: two signals sent at once may be merged into one
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code, err = _finish(proc, timeout=20)
        assert code == ExitCode.INTERRUPTED, err
        assert time.monotonic() - t0 < 8
        rows = _journal_query(state, "SELECT COUNT(*) FROM jobs WHERE state = 'running'")
        assert rows[0][0] == 0  # everything not finished is pending again


def test_losing_the_governor_stops_the_run_resumably(tmp_path: Path, slow_sim: SimServer) -> None:
    proc, batch, config = _start(tmp_path, slow_sim)
    state = tmp_path / ".anvil"
    _wait_for(lambda: _succeeded(state) >= 5)
    rows = _journal_query(state, "SELECT data_json FROM events WHERE kind = 'governor_started'")
    import json

    os.kill(int(json.loads(str(rows[0][0]))["pid"]), signal.SIGKILL)
    code, err = _finish(proc)
    assert code == ExitCode.STOPPED, err
    assert "governor" in err
    out = tmp_path / "out.jsonl"
    resumed = run_cli("run", str(batch), "--config", str(config), "-o", str(out), cwd=tmp_path)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert all(r["status"] == "succeeded" for r in read_results(out))
