"""`--mode batches` reports and stops like messages mode: the same snapshot for GET /status and
`anvil status`, pause/resume/drain over HTTP, `-q`, the budget warning, Ctrl-C and kill -9
(with the embedded simulator) followed by a resume. Every wait polls real progress, bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from anthropic.resources.messages.batches import Batches

from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.modes.batches.ids import custom_id, run_tag
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.sim.embedded import BATCH_DIR
from tests.engine_support import (
    anvil_cmd,
    cli_env,
    invoke_cli,
    read_results,
    run_cli,
    run_inprocess,
    write_config,
    write_jobs,
)
from tests.test_api_e2e import Served, start_served, wait_for

BATCHES = {"max_requests": 8, "poll_interval_s": 0.05, "max_attempts": 3}


def _jobs(n: int, tag: str = "q") -> list[dict[str, Any]]:
    return [{"id": f"{tag}-{i}", "prompt": f"{tag} {i}"} for i in range(n)]


def _journal_counts(state_dir: Path) -> dict[str, int]:
    with Journal.open(state_dir) as journal:
        run = journal.latest_run()
        assert run is not None
        return journal.counts(run.id)


@pytest.fixture
def slow_sim() -> Iterator[SimServer]:
    """A batch of 8 requests takes 4 s: time enough to steer the run while it is open."""
    with SimServer(SimConfig(seed=21, batch_seconds_per_request=0.5)).start_thread() as server:
        yield server


@pytest.fixture
def serve(tmp_path: Path, slow_sim: SimServer) -> Iterator[Callable[[int], Served]]:
    started: list[Served] = []

    def start(n_jobs: int) -> Served:
        batch = write_jobs(tmp_path / "b.jsonl", _jobs(n_jobs))
        config = write_config(tmp_path / "anvil.yaml", slow_sim.base_url, batches=BATCHES)
        served = start_served(tmp_path, batch, config, "--mode", "batches")
        started.append(served)
        return served

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()


def _same_tick(run: Served, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(GET /status, `anvil status --json`) read within one tick of the run."""
    for _ in range(10):
        done = invoke_cli("status", run_id, "--json", "--config", str(run.config), cwd=run.cwd)
        assert done.returncode == 0, done.stderr
        cli = json.loads(done.stdout)
        served = run.api.status()
        if served["updated_at"] == cli["updated_at"]:
            return served, cli
    raise AssertionError("no two reads within one tick")


@pytest.mark.slow
def test_status_is_live_and_pause_stops_submitting_until_resume(
    serve: Callable[[int], Served], slow_sim: SimServer
) -> None:
    run = serve(16)
    assert run.api.post("/pause") == (200, {"ok": True, "paused": True})
    wait_for(lambda: run.api.status()["state"] == "paused", what="paused")
    status = run.api.status()
    assert status["paused"] is True and status["counts"]["total"] == 16
    assert status["budget"].keys() == {"spent_usd", "reserved_usd", "max_usd", "warn_usd"}

    served, cli = _same_tick(run, status["run_id"])
    assert cli["live"] is True and cli["paused"] is True
    # one tick, one JSON: GET /status is `anvil status --json` (both count from the journal)
    # the same JSON, but for `spend`, which only `anvil status` reads (it reads every finished job)
    spend = cli.pop("spend")
    assert sum(m["jobs"] for m in spend["by_model"]) == cli["counts"]["succeeded"] + cli["counts"]["failed"]
    assert {**cli, "counts": None} == {**served, "counts": None}
    assert {k: cli["counts"][k] for k in served["counts"]} == served["counts"]

    created = slow_sim.stats()["batches_created"]  # however many went out before the pause
    added = [{**job, "model": "claude-haiku-4-5", "max_tokens": 32} for job in _jobs(3, "late")]
    assert run.api.post("/jobs", added)[0] == 202
    # polling goes on while paused: the open batches end and are downloaded...
    wait_for(lambda: run.api.status()["counts"]["running"] == 0, what="the open batches downloaded")
    in_batches = run.api.status()["counts"]["succeeded"]
    seen = run.api.status()["updated_at"]
    wait_for(lambda: run.api.status()["updated_at"] > seen, what="one more tick")
    # ...but nothing more is submitted while paused: neither the rest nor the jobs that arrived
    assert slow_sim.stats()["batches_created"] == created
    assert run.api.status()["queue_depth"] == 19 - in_batches > 0

    assert run.api.post("/resume") == (200, {"ok": True, "paused": False})
    assert run.finish() == ExitCode.OK, run.stderr()
    assert slow_sim.stats()["batches_created"] > created
    assert _journal_counts(run.cwd / ".anvil")["succeeded"] == 19


@pytest.mark.slow
def test_drain_exits_130_and_a_rerun_reattaches_and_finishes(
    serve: Callable[[int], Served], slow_sim: SimServer
) -> None:
    run = serve(16)
    wait_for(lambda: run.api.status()["agents"]["in_flight"] == 16, what="both batches open")
    assert run.api.post("/drain") == (200, {"ok": True, "draining": True})
    assert run.finish() == ExitCode.INTERRUPTED, run.stderr()
    assert "resume" in run.stderr()
    with Journal.open(run.cwd / ".anvil") as journal:
        last = journal.latest_run()
        assert last is not None and last.snapshot is not None
        assert last.snapshot["state"] == "stopped"  # the last tick shows the end
    assert _journal_counts(run.cwd / ".anvil")["succeeded"] == 0

    out = run.cwd / "out.jsonl"
    resumed = run_inprocess(run.config, run.batch, out, mode="batches")
    assert resumed.exit_code == ExitCode.OK, resumed.summary
    stats = slow_sim.stats()
    assert stats["batches_created"] == 2 and stats["paid_duplicates"] == 0  # re-attached, not resubmitted
    results = read_results(out)
    assert len(results) == 16 and all(r["status"] == "succeeded" for r in results)


@pytest.mark.slow
def test_quiet_prints_only_the_summary(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=22, batch_seconds_per_request=0.001)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _jobs(12))
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, batches=BATCHES)
        done = run_cli("run", str(batch), "--config", str(config), "--mode", "batches", "-q", cwd=tmp_path)
        assert sim.stats()["batches_created"] == 2
    assert done.returncode == ExitCode.OK, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("run ") and "12 succeeded" in done.stdout


def _budget_events(state_dir: Path, run_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with Journal.open(state_dir) as journal:
        warned = journal.events(run_id, "budget_warn")
        alerts = [a for a in journal.events(run_id, "alert") if a["name"] == "budget_warn"]
    return warned, alerts


def test_warn_usd_raises_the_same_event_and_alert_as_messages_mode(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=23, batch_seconds_per_request=0.001)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _jobs(10))
        budget = {"warn_usd": 0.0001, "max_usd": 1.0}
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, batches=BATCHES, budget=budget)
        report = run_inprocess(config, batch, mode="batches")
        messages_config = write_config(
            tmp_path / "m.yaml", sim.base_url, budget=budget, state_dir=str(tmp_path / "m")
        )
        messages = run_inprocess(messages_config, batch)
    assert report.exit_code == messages.exit_code == ExitCode.OK
    warned, alerts = _budget_events(tmp_path / ".anvil", report.run_id)
    m_warned, m_alerts = _budget_events(tmp_path / "m", messages.run_id)
    assert len(warned) == len(m_warned) == 1
    assert warned[0].keys() == m_warned[0].keys() and warned[0]["warn_usd"] == pytest.approx(0.0001)
    assert warned[0]["spent_usd"] >= 0.0001
    assert [a["change"] for a in alerts] == [a["change"] for a in m_alerts] == ["raised"]
    assert alerts[0].keys() == m_alerts[0].keys() and alerts[0]["severity"] == "medium"


def test_ctrl_c_after_the_first_batch_submits_no_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Batches.create

    def create_then_ctrl_c(self: Batches, **kwargs: Any) -> Any:
        batch = original(self, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C as the first batch is made
        return batch

    with SimServer(SimConfig(seed=24, batch_seconds_per_request=0.001)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _jobs(24))
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, batches=BATCHES)
        with monkeypatch.context() as patch:
            patch.setattr(Batches, "create", create_then_ctrl_c)
            stopped = run_inprocess(config, batch, mode="batches")
        assert stopped.exit_code == ExitCode.INTERRUPTED, stopped.summary
        assert sim.stats()["batches_created"] == 1  # not the two others
        out = tmp_path / "out.jsonl"
        resumed = run_inprocess(config, batch, out, mode="batches")
        stats = sim.stats()
    assert resumed.exit_code == ExitCode.OK, resumed.summary
    assert stats["batches_created"] == 3 and stats["paid_duplicates"] == 0
    results = read_results(out)
    assert len(results) == 24 and all(r["status"] == "succeeded" for r in results)


def _succeeded_on_the_simulator(state_dir: Path) -> list[str]:
    """The custom_id of every succeeded request in the embedded simulator's batches."""
    found = []
    for path in (state_dir / BATCH_DIR).glob("*.json"):
        data = json.loads(path.read_text())
        found += [r["custom_id"] for r in data["results"] or [] if r["result"]["type"] == "succeeded"]
    return found


@pytest.mark.slow
def test_kill_9_with_the_embedded_simulator_then_rerun_completes_each_job_once(tmp_path: Path) -> None:
    batch = write_jobs(tmp_path / "b.jsonl", _jobs(40))
    slow_polls = {**BATCHES, "poll_interval_s": 2.0}  # killed while waiting to poll again
    config = write_config(tmp_path / "anvil.yaml", "http://unused.invalid", batches=slow_polls)
    cmd = anvil_cmd("run", str(batch), "--config", str(config), "--mode", "batches", "--simulate", "-q")
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    state_dir = tmp_path / ".anvil"

    def submitted() -> bool:
        assert proc.poll() is None, proc.communicate()
        journal = Journal.open_existing(state_dir)
        if journal is None:
            return False
        with journal:
            run = journal.latest_run()
            return run is not None and any(b.batch_id for b in journal.batches(run.id))

    try:
        wait_for(submitted, timeout_s=30, what="a batch submitted")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert _journal_counts(state_dir)["succeeded"] < 40  # killed mid-run

    out = tmp_path / "out.jsonl"
    resumed = run_inprocess(config, batch, out, mode="batches", simulate=True)
    assert resumed.exit_code == ExitCode.OK, (resumed.summary, resumed.message)
    results = read_results(out)
    assert len(results) == 40 and all(r["status"] == "succeeded" for r in results)
    ours = sorted(custom_id(run_tag(resumed.run_id), seq) for seq in range(40))
    assert sorted(_succeeded_on_the_simulator(state_dir)) == ours  # each answered (and paid) once
