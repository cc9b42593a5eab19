"""`anvil status`: finished, running and interrupted runs, human and --json, and --watch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
from typer.testing import CliRunner

from anvil_cli.cli import app
from anvil_cli.engine.journal.store import Journal
from anvil_cli.jobs.loader import load_batch
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.snapshot.build import snapshot_of
from anvil_cli.snapshot.status import status_json
from anvil_cli.snapshot.types import Alert
from tests.engine_support import (
    anvil_cmd,
    cli_env,
    run_inprocess,
    write_config,
    write_jobs,
    write_jsonl_batch,
)
from tests.snapshot_support import WALL0, snapshot

runner = CliRunner()


def status(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["status", *args], env={"NO_COLOR": "1", "COLUMNS": "100"})
    return result.exit_code, result.output


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(seed=1)).start_thread() as server:
        yield server


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(tmp_path / ".anvil")
    yield j
    j.close()


def add_run(journal: Journal, tmp_path: Path, name: str, *, pid: int | None = None) -> str:
    """A run left `running` (by this process unless `pid` says otherwise), with a snapshot."""
    batch = write_jsonl_batch(tmp_path / f"{name}.jsonl", ["a", "b", "c"])
    run_id = journal.create_run(str(batch.resolve()), "sha", load_batch(batch))
    alert: Alert = {
        "name": "queue_depth",
        "severity": "high",
        "message": "600 jobs waiting",
        "value": 600.0,
        "threshold": 500.0,
        "since": WALL0,
    }
    scaled = {"at": WALL0 + 30, "kind": "scaled", "from": 20, "to": 14, "busy": 18}
    journal.save_snapshot(run_id, dict(snapshot(run_id=run_id, alerts=(alert,), history=(scaled,))))
    if pid is not None:
        journal.db.execute("UPDATE runs SET pid = ? WHERE id = ?", (pid, run_id))
    return run_id


def test_no_journal_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    code, out = status("--state-dir", str(tmp_path / "nowhere"))
    assert code == 2 and "no journal" in out
    assert not (tmp_path / "nowhere").exists()


def test_finished_run(tmp_path: Path, sim: SimServer) -> None:
    batch = write_jsonl_batch(tmp_path / "done.jsonl", ["a", "b", "c"])
    config = write_config(tmp_path / "anvil.yaml", sim.base_url)
    report = run_inprocess(config, batch)
    code, out = status("--config", str(config))
    assert code == 0, out
    assert "recent runs" in out and report.run_id in out and "finished" in out and "3/3" in out
    code, out = status(report.run_id[:-2], "--config", str(config))
    assert code == 0 and "3 succeeded, 0 failed" in out
    assert "API call latency p50" in out and "job time p50" in out
    assert "resume with" not in out
    code, out = status(report.run_id, "--json", "--config", str(config))
    st = json.loads(out)
    assert st["state"] == "finished" and st["live"] is False and st["resume_command"] is None
    assert st["counts"] == {"total": 3, "pending": 0, "running": 0, "succeeded": 3, "failed": 0, "done": 3}
    assert st["metrics"]["call_latency_s"]["p50"] is not None and st["summary"]["exit_code"] == 0
    assert st["metrics"]["job_time_s"]["count"] == 3
    assert st["alerts"] == [] and st["history"] == []
    assert snapshot_of(st) is not None  # every key of the run's last snapshot, at the top level
    assert st["call_latency_s"]["count"] >= 3 and st["agents"]["in_flight"] == 0
    assert {p["binding"] for p in st["limits"].values()} <= {None}  # the run is over


def test_breaker_history_of_a_finished_run(tmp_path: Path, sim: SimServer) -> None:
    jobs = [{"id": f"f{i}", "prompt": f"@sim{{fail=529x2, retry_after=0}} f{i}"} for i in range(3)]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    config = write_config(
        tmp_path / "anvil.yaml",
        sim.base_url,
        scaling={"workers": 1, "max_agents": 1, "max_concurrent_jobs": 1},
        circuit_breaker={"failure_threshold": 2, "recovery_timeout_s": 0.3, "half_open_probes": 1},
    )
    report = run_inprocess(config, batch)
    code, out = status(report.run_id, "--json", "--config", str(config))
    st = json.loads(out)
    states = [(e["kind"], e["model"], e["state"]) for e in st["history"]]
    assert ("breaker", "claude-haiku-4-5", "open") in states and states[-1][2] == "closed"
    assert [e["at"] for e in st["history"]] == sorted(e["at"] for e in st["history"])
    code, out = status(report.run_id, "--config", str(config))
    assert code == 0 and "breaker and scaling history:" in out
    assert "breaker claude-haiku-4-5 open (2 failures)" in out and "breaker claude-haiku-4-5 closed" in out


def test_running_run_shows_the_live_snapshot(tmp_path: Path, journal: Journal) -> None:
    run_id = add_run(journal, tmp_path, "live")
    code, out = status(run_id, "--state-dir", str(tmp_path / ".anvil"))
    assert code == 0, out
    assert "running" in out and "18/20 in flight" in out and "[high] queue_depth: 600 jobs waiting" in out
    assert "interrupted" not in out
    code, out = status("--json", "--state-dir", str(tmp_path / ".anvil"))  # the latest run + the list
    st = json.loads(out)
    assert st["run_id"] == run_id and st["state"] == "running" and st["live"] is True
    assert st["agents"]["in_flight"] == 18 and st["queue_depth"] == 350
    assert [a["name"] for a in st["alerts"]] == ["queue_depth"]
    assert st["metrics"]["done"] == 600 and st["governor"]["pools"]
    assert st["counts"]["pending"] == 3 and [r["run_id"] for r in st["runs"]] == [run_id]
    assert st["history"] == []  # the journal's events: this hand-made run recorded none
    journal.add_event(
        run_id, "scaled", {"from": 20, "to": 14, "busy": 18, "limiter_pct": 97.0}, at=WALL0 + 30
    )
    st = status_json(journal, run_id)
    assert st["history"] == [
        {
            "at": WALL0 + 30,
            "kind": "scaled",
            "agents_from": 20,
            "agents_to": 14,
            "busy": 18,
            "limiter_pct": 97.0,
        }
    ]
    code, out = status(run_id, "--state-dir", str(tmp_path / ".anvil"))
    assert "agents 20 → 14 (18 busy, rate limit 97% used)" in out


def test_a_run_without_a_stored_snapshot_still_has_every_key(tmp_path: Path, journal: Journal) -> None:
    batch = write_jsonl_batch(tmp_path / "bare.jsonl", ["a", "b"])
    run_id = journal.create_run(str(batch.resolve()), "sha", load_batch(batch))
    st = status_json(journal, run_id)
    assert snapshot_of(st) is not None and st["call_latency_s"]["p50"] is None
    assert st["counts"]["pending"] == 2 and st["eta_s"] is None and st["live"] is True
    assert st["state"] == "starting" and st["stored_state"] == "running"
    code, out = status(run_id, "--state-dir", str(tmp_path / ".anvil"))
    assert code == 0 and "0/2" in out


def test_running_row_whose_process_is_gone_is_interrupted(tmp_path: Path, journal: Journal) -> None:
    run_id = add_run(journal, tmp_path, "crashed", pid=dead_pid())
    code, out = status(run_id, "--state-dir", str(tmp_path / ".anvil"))
    assert code == 0, out
    assert "interrupted" in out and "is gone" in out
    assert f"anvil run {tmp_path.resolve() / 'crashed.jsonl'}" in out.replace("\n", "")
    st = status_json(journal, run_id)
    assert st["state"] == "interrupted" and st["stored_state"] == "running" and not st["live"]
    assert st["resume_command"] == f"anvil run {tmp_path.resolve() / 'crashed.jsonl'}"
    assert st["alerts"] == []  # a dead run raises nothing any more
    code, out = status("--state-dir", str(tmp_path / ".anvil"))
    assert "interrupted" in out


def test_unknown_run_exits_2(tmp_path: Path, journal: Journal) -> None:
    add_run(journal, tmp_path, "x")
    code, out = status("nope", "--state-dir", str(tmp_path / ".anvil"))
    assert code == 2 and "no run matches 'nope'" in out


def _watch_env() -> dict[str, str]:
    env = cli_env()
    env.update({"TERM": "xterm", "COLUMNS": "100", "LINES": "40"})
    return env


def _signal_state(pid: int) -> str:
    """A process's state and signal masks from /proc: what to look at if Ctrl-C did not end it."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError as exc:
        return f"no /proc status ({exc})"
    wanted = {"State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"}
    return "; ".join(line for line in lines if line.split(":")[0] in wanted)


def test_watch_refreshes_until_ctrl_c_and_exits_0(tmp_path: Path, journal: Journal) -> None:
    run_id = add_run(journal, tmp_path, "watched")
    cmd, *args = anvil_cmd("status", run_id, "--watch", "--state-dir", str(tmp_path / ".anvil"))
    child = pexpect.spawn(cmd, args, env=_watch_env(), dimensions=(40, 100), timeout=60, cwd=str(tmp_path))
    try:
        child.expect("in flight")
        child.sendintr()
        if child.expect([pexpect.EOF, pexpect.TIMEOUT]) == 1:  # 60 s: a hang guard only
            raise AssertionError(f"still running 60 s after Ctrl-C: {_signal_state(child.pid)}")
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before


def test_watch_json_prints_a_line_per_second(tmp_path: Path, journal: Journal) -> None:
    run_id = add_run(journal, tmp_path, "watched")
    proc = subprocess.Popen(
        anvil_cmd("status", run_id, "--watch", "--json", "--state-dir", str(tmp_path / ".anvil")),
        stdout=subprocess.PIPE,
        env=cli_env(),
        text=True,
    )
    assert proc.stdout is not None
    first: dict[str, Any] = json.loads(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 0  # a hang guard only
    proc.stdout.close()
    assert first["run_id"] == run_id and first["live"] is True


def test_get_status_is_the_same_json_as_status_json(tmp_path: Path, journal: Journal) -> None:
    from anvil_cli.engine.journal.store import journal_path
    from anvil_cli.session.control import RunControl

    run_id = add_run(journal, tmp_path, "served")
    control = RunControl(journal_path(tmp_path / ".anvil"), run_id, agent_min=1, agent_max=20)
    try:
        stored = journal.get_run(run_id)
        assert stored is not None and stored.snapshot is not None
        assert json.loads(json.dumps(control.status())) == json.loads(
            json.dumps(status_json(journal, run_id))
        )
    finally:
        control.close()
