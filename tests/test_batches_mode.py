"""`anvil run --mode batches`: Message Batches end to end on the simulator, kill and re-attach."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.resources.messages.batches import Batches
from rich.console import Console

from anvil_cli.config.load import load_settings
from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.modes.batches.ids import custom_id, run_tag, seq_of
from anvil_cli.engine.modes.batches.requests import TOOLS_NEED_MESSAGES
from anvil_cli.exitcodes import ExitCode
from anvil_cli.session.runner import RunOptions, RunReport, execute_run
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.views.dashboard import PlainReporter, RunMonitor
from tests.engine_support import anvil_cmd, cli_env, read_results, run_inprocess, write_config, write_jobs

FAST_BATCHES = {"max_requests": 8, "poll_interval_s": 0.05, "max_attempts": 3}


def run_with_lines(config: Path, batch: Path, output: Path, **opts: Any) -> RunReport:
    """`run_inprocess` showing plain lines on stderr (as `--no-dashboard` does), not silent."""
    settings = load_settings(config, env={})
    reporter = PlainReporter(Console(stderr=True, width=400), settings.run.progress_interval_s)
    monitor = RunMonitor(settings, reporter, batch_path=str(batch.resolve()))
    options = RunOptions(batch=batch, output=output, api_key="test-key", **opts)
    return execute_run(settings, options, monitor=monitor)


def _jobs(n: int, tag: str = "q") -> list[dict[str, Any]]:
    return [{"id": f"job {i}/{tag}", "prompt": f"{tag} {i}"} for i in range(n)]


def test_batches_mode_runs_every_job_at_half_price(tmp_path: Path) -> None:
    jobs = [*_jobs(20), {"id": "flaky", "prompt": "@sim{fail=500x1} flaky"}]
    with SimServer(
        SimConfig(seed=5, output_tokens=30, batch_seconds_per_request=0.001)
    ).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", jobs)
        config = write_config(
            tmp_path / "anvil.yaml", sim.base_url, batches=FAST_BATCHES, cache={"enabled": False}
        )
        out = tmp_path / "out.jsonl"
        report = run_inprocess(config, batch, out, mode="batches")
        assert report.exit_code == ExitCode.OK, report.summary
        stats = sim.stats()
        assert stats["batches_created"] == 4  # 21 jobs in batches of 8, then the errored one again
        assert stats["requests"] == 0  # nothing through the Messages endpoint
        results = {r["id"]: r for r in read_results(out)}
        assert all(r["status"] == "succeeded" for r in results.values())
        assert results["flaky"]["attempts"] == 2
        with Journal.open(tmp_path / ".anvil") as journal:
            rows = journal.batches(report.run_id)
        assert [len(r.seqs) for r in rows] == [8, 8, 5, 1] and {r.state for r in rows} == {"ended"}

        batch_cost = report.summary["run_cost_usd"]
        config = write_config(
            tmp_path / "anvil.yaml", sim.base_url, cache={"enabled": False}, state_dir=str(tmp_path / "m")
        )
        messages = run_inprocess(config, batch, tmp_path / "m.jsonl")
    assert batch_cost == pytest.approx(messages.summary["run_cost_usd"] / 2, rel=1e-6)


def _wait_for_batch_id(state_dir: Path, proc: subprocess.Popen[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        journal = Journal.open_existing(state_dir)
        if journal is not None:
            with journal:
                run = journal.latest_run()
                if run is not None and any(b.batch_id for b in journal.batches(run.id)):
                    return
        time.sleep(0.05)  # sleep-ok: polling the journal for real progress, bounded by a deadline
    raise AssertionError("no batch id was recorded")


def test_killed_run_reattaches_without_resubmitting(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=6, batch_seconds_per_request=0.1)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _jobs(16))
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, batches=FAST_BATCHES)
        cmd = anvil_cmd("run", str(batch), "--config", str(config), "--mode", "batches", "-q")
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            _wait_for_batch_id(tmp_path / ".anvil", proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        created = sim.stats()["batches_created"]
        assert 1 <= created <= 2
        out = tmp_path / "out.jsonl"
        report = run_inprocess(config, batch, out)  # no --mode: open batches are re-attached anyway
        assert report.exit_code == ExitCode.OK, report.summary
        stats = sim.stats()
    assert stats["batches_created"] == 2  # the batches of the killed run, nothing submitted twice
    assert stats["paid_duplicates"] == 0
    results = read_results(out)
    assert len(results) == 16 and all(r["status"] == "succeeded" for r in results)


def test_unconfirmed_create_is_found_on_the_server_not_resubmitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Batches.create

    def create_then_lose_the_answer(self: Batches, **kwargs: Any) -> Any:
        original(self, **kwargs)
        raise anthropic.APIConnectionError(request=httpx2.Request("POST", "http://sim/v1/messages/batches"))

    monkeypatch.setattr(Batches, "create", create_then_lose_the_answer)
    with SimServer(SimConfig(seed=7, batch_seconds_per_request=0.001)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _jobs(6))
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, batches=FAST_BATCHES)
        out = tmp_path / "out.jsonl"
        report = run_inprocess(config, batch, out, mode="batches")
        assert report.exit_code == ExitCode.OK
        assert sim.stats()["batches_created"] == 1
    assert all(r["status"] == "succeeded" for r in read_results(out))


def test_budget_stops_batches_mode_with_exit_3(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=8, batch_seconds_per_request=0.001)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _jobs(40))
        # worst case per job (batch): ~(13 x 2 x 1 + 64 x 5) / 2 / 1e6 = ~0.00017 USD
        config = write_config(
            tmp_path / "anvil.yaml", sim.base_url, batches=FAST_BATCHES, budget={"max_usd": 0.002}
        )
        out = tmp_path / "out.jsonl"
        report = run_inprocess(config, batch, out, mode="batches")
    assert report.exit_code == ExitCode.STOPPED and report.summary["stop_reason"] == "budget"
    results = read_results(out)
    assert sum(float(r["cost_usd"]) for r in results) <= 0.002
    assert 0 < sum(r["status"] == "succeeded" for r in results) < 40


def test_transient_api_errors_while_polling_and_downloading_are_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    original = Batches.results
    troubles: list[Exception] = [
        anthropic.APITimeoutError(request=httpx2.Request("GET", "http://sim/results")),
        anthropic.InternalServerError(
            "upstream",
            response=httpx2.Response(
                503, headers={"retry-after": "0"}, request=httpx2.Request("GET", "http://sim/results")
            ),
            body={"type": "error", "error": {"type": "api_error", "message": "upstream"}},
        ),
    ]

    def results_failing_twice(self: Batches, *args: Any, **kwargs: Any) -> Any:
        if troubles:
            raise troubles.pop(0)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Batches, "results", results_failing_twice)
    config_sim = SimConfig(seed=9, batch_seconds_per_request=0.001, batch_api_fail_first=4)
    with SimServer(config_sim).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _jobs(12))
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, batches=FAST_BATCHES)
        out = tmp_path / "out.jsonl"
        report = run_with_lines(config, batch, out, mode="batches")
        stats = sim.stats()
    assert report.exit_code == ExitCode.OK, report.summary
    assert stats["batches_created"] == 2 and stats["paid_duplicates"] == 0
    results = read_results(out)
    assert len(results) == 12 and all(r["status"] == "succeeded" for r in results)
    lines = [line for line in capsys.readouterr().err.splitlines() if "Message Batches API error" in line]
    # one line per failed call: the SDK's own retries are off, so it absorbed none of the 529s
    assert sum(" 529 (overloaded_error) while polling batch" in line for line in lines) == 4, lines
    assert sum("(timeout) while downloading the results" in line for line in lines) == 1, lines
    assert sum(" 503 (api_error) while downloading the results" in line for line in lines) == 1, lines


def test_a_permission_error_while_polling_stops_resumably(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(self: Batches, *args: Any, **kwargs: Any) -> Any:
        request = httpx2.Request("GET", "http://sim/v1/messages/batches/x")
        raise anthropic.PermissionDeniedError(
            "forbidden",
            response=httpx2.Response(403, request=request),
            body={"type": "error", "error": {"type": "permission_error", "message": "key revoked"}},
        )

    with SimServer(SimConfig(seed=10, batch_seconds_per_request=0.001)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _jobs(5))
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, batches=FAST_BATCHES)
        out = tmp_path / "out.jsonl"
        with monkeypatch.context() as patch:
            patch.setattr(Batches, "retrieve", forbidden)
            stopped = run_inprocess(config, batch, out, mode="batches")
        assert stopped.exit_code == ExitCode.STOPPED, stopped.summary
        assert stopped.summary["stop_reason"] == "permission_error"
        assert stopped.message is not None and "key revoked" in stopped.message
        resumed = run_inprocess(config, batch, out)
        assert resumed.exit_code == ExitCode.OK and sim.stats()["batches_created"] == 1
    assert all(r["status"] == "succeeded" for r in read_results(out))


def test_another_state_dirs_batch_is_never_adopted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Batches.create
    foreign: list[str] = []

    def someone_elses_batch_then_lose_ours(self: Batches, **kwargs: Any) -> Any:
        if not foreign:  # same size, created just now by another state dir; ours never arrives
            theirs = [{**r, "custom_id": f"j{n}"} for n, r in enumerate(kwargs["requests"])]
            foreign.append(original(self, requests=theirs).id)
            raise anthropic.APIConnectionError(
                request=httpx2.Request("POST", "http://sim/v1/messages/batches")
            )
        return original(self, **kwargs)

    monkeypatch.setattr(Batches, "create", someone_elses_batch_then_lose_ours)
    # slow enough that the other batch is still processing at the first look: it is waited for
    with SimServer(SimConfig(seed=11, batch_seconds_per_request=0.05)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _jobs(6))
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, batches=FAST_BATCHES)
        out = tmp_path / "out.jsonl"
        report = run_inprocess(config, batch, out, mode="batches")
        assert report.exit_code == ExitCode.OK, report.summary
        assert sim.stats()["batches_created"] == 2  # theirs, then ours submitted again
    with Journal.open(tmp_path / ".anvil") as journal:
        rows = journal.batches(report.run_id)
    assert [r.state for r in rows] == ["abandoned", "ended"] and rows[1].batch_id != foreign[0]
    assert all(r["status"] == "succeeded" for r in read_results(out))


def test_custom_ids_are_run_specific() -> None:
    tag = run_tag("run-a")
    assert tag != run_tag("run-b") and len(tag) == 6
    cid = custom_id(tag, 123_456)
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", cid)
    assert seq_of(cid, tag) == 123_456
    assert seq_of(custom_id(run_tag("run-b"), 7), tag) is None
    assert seq_of("j42", tag) == 42  # batches recorded by earlier versions
    assert seq_of(f"{tag}-²", tag) is None and seq_of("other", tag) is None


def test_tools_with_a_command_fail_in_batches_mode_and_are_never_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    runnable = {"name": "lookup", "input_schema": schema, "anvil_command": "python lookup.py"}
    plain = {"name": "search", "input_schema": schema}
    jobs = [
        {"id": "plain", "prompt": "hi"},
        {"id": "runs-a-command", "prompt": "look it up", "tools": [runnable]},
        {"id": "api-tool", "prompt": "search", "tools": [plain]},
    ]
    original = Batches.create
    sent: list[Any] = []

    def recording(self: Batches, **kwargs: Any) -> Any:
        sent.append(kwargs["requests"])
        return original(self, **kwargs)

    monkeypatch.setattr(Batches, "create", recording)
    with SimServer(SimConfig(seed=12, batch_seconds_per_request=0.001)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", jobs)
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, batches=FAST_BATCHES)
        out = tmp_path / "out.jsonl"
        report = run_inprocess(config, batch, out, mode="batches")
    assert report.exit_code == ExitCode.JOBS_FAILED, report.summary
    results = {r["id"]: r for r in read_results(out)}
    assert results["plain"]["status"] == "succeeded"
    assert results["api-tool"]["status"] == "succeeded" and results["api-tool"]["stop_reason"] == "tool_use"
    failed = results["runs-a-command"]
    assert failed["status"] == "failed" and failed["error"]["message"] == TOOLS_NEED_MESSAGES
    assert "--mode messages" in TOOLS_NEED_MESSAGES
    (requests,) = sent
    assert len(requests) == 2 and "anvil_command" not in json.dumps(requests)
