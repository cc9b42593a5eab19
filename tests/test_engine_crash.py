"""Crashes and signals: kill -9 of a worker or of the conductor, Ctrl-C, then resume."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import (
    anvil_cmd,
    cli_env,
    invoke_cli,
    journal_query,
    read_results,
    run_cli,
    succeeded_jobs,
    write_config,
    write_jsonl_batch,
)

N_JOBS = 60
AGENTS = 8
HANG_GUARD_S = 60.0  # waits only against a hang, never a measure of speed


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


class _StderrWatch:
    """Reads a process's stderr in a thread; `seen` is set once a line contains `needle`."""

    def __init__(self, proc: subprocess.Popen[str], needle: str) -> None:
        self.lines: list[str] = []
        self.seen = threading.Event()
        self._proc = proc
        self._needle = needle
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self.lines.append(line)
            if self._needle in line:
                self.seen.set()

    def text(self) -> str:
        """What it wrote so far; all of it once the process has exited."""
        self._thread.join(HANG_GUARD_S if self._proc.poll() is not None else 0)
        return "".join(self.lines)


def _worker_pids(state_dir: Path) -> list[int]:
    rows = journal_query(state_dir, "SELECT data_json FROM events WHERE kind = 'worker_started'")

    return [int(json.loads(str(r[0]))["pid"]) for r in rows]


def _arrived(sim: SimServer) -> int:
    """Requests the server has received: answered ones plus those it is still answering."""
    stats = sim.stats()
    return int(stats["requests"]) + int(stats["in_flight"])


def _start(
    tmp_path: Path, sim: SimServer, stdout: int = subprocess.PIPE, **cfg: object
) -> tuple[subprocess.Popen[str], Path, Path]:
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
        stdout=stdout,
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


@pytest.mark.slow
def test_kill_9_of_a_worker_loses_nothing(tmp_path: Path, slow_sim: SimServer) -> None:
    proc, _batch, config = _start(tmp_path, slow_sim)
    state = tmp_path / ".anvil"
    _wait_for(lambda: succeeded_jobs(state) >= 10)
    victim = _worker_pids(state)[0]
    os.kill(victim, signal.SIGKILL)
    code, err = _finish(proc)
    assert code == ExitCode.OK, err
    out = tmp_path / "out.jsonl"
    assert invoke_cli("export", "-o", str(out), "--config", str(config), cwd=tmp_path).returncode == 0
    results = read_results(out)
    assert len(results) == N_JOBS and all(r["status"] == "succeeded" for r in results)
    # in the journal's order: the victim started, died, and then a new worker started
    events = journal_query(
        state, "SELECT kind, data_json FROM events WHERE kind LIKE 'worker_%' ORDER BY rowid"
    )
    workers = [(str(kind), json.loads(str(data))) for kind, data in events]
    (started_at,) = [i for i, (k, d) in enumerate(workers) if k == "worker_started" and d["pid"] == victim]
    victim_id = workers[started_at][1]["worker"]
    (died_at,) = [i for i, (k, d) in enumerate(workers) if k == "worker_died" and d["worker"] == victim_id]
    assert started_at < died_at
    assert any(k == "worker_started" for k, _ in workers[died_at + 1 :])  # the replacement


@pytest.mark.slow
def test_kill_9_of_the_conductor_then_resume_runs_each_job_once(tmp_path: Path, slow_sim: SimServer) -> None:
    proc, batch, config = _start(tmp_path, slow_sim)
    state = tmp_path / ".anvil"
    _wait_for(lambda: succeeded_jobs(state) >= 15)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    workers = _worker_pids(state)
    _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers))
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


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_then_resume_completes(tmp_path: Path, slow_sim: SimServer) -> None:
    proc, batch, config = _start(tmp_path, slow_sim)
    state = tmp_path / ".anvil"
    _wait_for(lambda: succeeded_jobs(state) >= 10)
    proc.send_signal(signal.SIGINT)
    code, err = _finish(proc, timeout=30)
    assert code == ExitCode.INTERRUPTED, err
    assert "resume" in err
    done_before = succeeded_jobs(state)
    assert done_before < N_JOBS
    status = invoke_cli("status", "--json", "--config", str(config), cwd=tmp_path)

    resume = json.loads(status.stdout)["resume_command"]
    assert resume.startswith("anvil run ") and "--config" in resume  # said the way it was started
    out = tmp_path / "out.jsonl"
    resumed = run_cli("run", str(batch), "--config", str(config), "-o", str(out), cwd=tmp_path)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    results = read_results(out)
    assert len(results) == N_JOBS and all(r["status"] == "succeeded" for r in results)
    assert slow_sim.stats()["paid_duplicates"] == 0  # a clean stop lets calls in flight finish


def test_second_ctrl_c_aborts_at_once(tmp_path: Path) -> None:
    # No answer comes within the test (10 minutes a call), and a clean stop would wait for them
    # as long: the run can only end within the hang guard if the second Ctrl-C aborts it.
    never_s = 600
    with SimServer(SimConfig(latency_ms=never_s * 1000, seed=5)).start_thread() as sim:
        proc, _batch, _config = _start(
            tmp_path,
            sim,
            stdout=subprocess.DEVNULL,
            provider={"timeout_s": never_s},
            run={"grace_period_s": never_s, "progress_interval_s": 60},
        )
        state = tmp_path / ".anvil"
        stderr = _StderrWatch(proc, "again to abort")
        try:
            _wait_for(lambda: sim.stats()["in_flight"] >= AGENTS)
            proc.send_signal(signal.SIGINT)
            # the first was handled before the second is sent (two at once may merge into one)
            assert stderr.seen.wait(HANG_GUARD_S), stderr.text()
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=HANG_GUARD_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert code == ExitCode.INTERRUPTED, stderr.text()
        assert "aborting" in stderr.text()
        assert succeeded_jobs(state) == 0  # it waited for none of the calls in flight
        rows = journal_query(state, "SELECT COUNT(*) FROM jobs WHERE state = 'running'")
        assert rows[0][0] == 0  # everything not finished is pending again


def _governor_pids(state_dir: Path) -> list[int]:
    rows = journal_query(state_dir, "SELECT data_json FROM events WHERE kind = 'governor_started'")
    return [int(json.loads(str(r[0]))["pid"]) for r in rows]


@pytest.mark.slow
def test_a_lost_governor_is_restarted_and_the_run_goes_on(tmp_path: Path, slow_sim: SimServer) -> None:
    proc, _batch, config = _start(tmp_path, slow_sim, budget={"max_usd": 50.0})
    state = tmp_path / ".anvil"
    _wait_for(lambda: succeeded_jobs(state) >= 5)
    (governor,) = _governor_pids(state)
    in_flight = slow_sim.stats()["in_flight"]
    os.kill(governor, signal.SIGKILL)
    code, err = _finish(proc)
    assert code == ExitCode.OK, err
    assert "governor was lost: started again" in err
    out = tmp_path / "out.jsonl"
    assert invoke_cli("export", "-o", str(out), "--config", str(config), cwd=tmp_path).returncode == 0
    results = read_results(out)
    assert len(results) == N_JOBS and all(r["status"] == "succeeded" for r in results)
    rows = journal_query(state, "SELECT data_json FROM events WHERE kind = 'governor_restarted'")
    (restarted,) = [json.loads(str(r[0])) for r in rows]
    assert restarted["generation"] == 1 and restarted["spent_usd"] > 0  # its budget came from the journal
    # the calls in flight were not lost: no job was dispatched twice
    assert slow_sim.stats()["paid_duplicates"] == 0, in_flight
    breakers = journal_query(state, "SELECT data_json FROM events WHERE kind = 'breaker'")
    states = [json.loads(str(r[0]))["state"] for r in breakers]
    assert states[:2] == ["half_open", "closed"]  # the new governor probed before letting traffic through


@pytest.mark.slow
def test_losing_the_fork_server_harms_no_worker(tmp_path: Path, slow_sim: SimServer) -> None:
    proc, _batch, config = _start(tmp_path, slow_sim)
    state = tmp_path / ".anvil"
    _wait_for(lambda: succeeded_jobs(state) >= 5)
    workers = _worker_pids(state)
    fork_servers = {_parent_of(pid) for pid in workers}
    assert len(fork_servers) == 1 and proc.pid not in fork_servers
    os.kill(fork_servers.pop(), signal.SIGKILL)
    code, err = _finish(proc)
    assert code == ExitCode.OK, err
    out = tmp_path / "out.jsonl"
    assert invoke_cli("export", "-o", str(out), "--config", str(config), cwd=tmp_path).returncode == 0
    assert all(r["status"] == "succeeded" for r in read_results(out))
    kinds = [str(k) for (k,) in journal_query(state, "SELECT kind FROM events")]
    assert "worker_died" not in kinds and "governor_restarted" not in kinds  # nothing was lost
    assert slow_sim.stats()["paid_duplicates"] == 0


def _parent_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1])


@pytest.mark.slow
def test_a_stopped_worker_is_noticed_killed_and_replaced(tmp_path: Path, slow_sim: SimServer) -> None:
    proc, _batch, config = _start(tmp_path, slow_sim, run={"worker_silence_s": 2, "grace_period_s": 5})
    state = tmp_path / ".anvil"
    _wait_for(lambda: succeeded_jobs(state) >= 10)
    victim = _worker_pids(state)[0]
    os.kill(victim, signal.SIGSTOP)  # alive, but answers nothing: without a heartbeat it would hang the run
    try:
        code, err = _finish(proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    assert code == ExitCode.OK, err
    out = tmp_path / "out.jsonl"
    assert invoke_cli("export", "-o", str(out), "--config", str(config), cwd=tmp_path).returncode == 0
    results = read_results(out)
    assert len(results) == N_JOBS and all(r["status"] == "succeeded" for r in results)
    sql = "SELECT kind FROM events WHERE kind LIKE 'worker_%' ORDER BY rowid"
    kinds = [str(k) for (k,) in journal_query(state, sql)]
    assert "worker_silent" in kinds and kinds.index("worker_silent") < kinds.index("worker_died")
    assert kinds.count("worker_started") >= 3  # a replacement
    assert slow_sim.stats()["paid_duplicates"] <= AGENTS
