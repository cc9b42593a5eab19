"""`anvil run --serve`: the HTTP API of a real run, end to end (simulator in-process, `anvil run`
in a subprocess). Every wait polls real progress, bounded; nothing sleeps for pacing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import (
    MODEL,
    anvil_cmd,
    cli_env,
    invoke_cli,
    read_results,
    run_cli,
    write_config,
    write_jsonl_batch,
)

N_JOBS = 40
AGENTS = 4
TOKEN = "e2e-api-token-0123456789abcdef"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        time.sleep(0.02)  # sleep-ok: polling for real progress, bounded by a deadline


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Api:
    """A tiny client of the run's API."""

    url: str
    token: str = TOKEN

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(self.url + path, method=method, data=data)
        req.add_header("Authorization", f"Bearer {token or self.token}")
        try:
            with NO_PROXY.open(req, timeout=10) as resp:
                status, ctype, payload = resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                status, ctype, payload = exc.code, exc.headers.get("Content-Type", ""), exc.read()
        return status, json.loads(payload) if ctype.startswith("application/json") else payload.decode()

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return self.request("POST", path, body)

    def up(self) -> bool:
        try:
            return self.get("/healthz")[0] == 200
        except OSError:
            return False

    def status(self) -> dict[str, Any]:
        code, body = self.get("/status")
        assert code == 200, body
        assert isinstance(body, dict)
        return body


@dataclass
class Served:
    """One `anvil run --serve` in a subprocess."""

    proc: subprocess.Popen[str]
    api: Api
    batch: Path
    config: Path
    cwd: Path
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def finish(self, timeout_s: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def export(self) -> dict[str, dict[str, Any]]:
        out = self.cwd / "exported.jsonl"
        done = invoke_cli("export", "-o", str(out), "--config", str(self.config), cwd=self.cwd)
        assert done.returncode == 0, done.stderr
        return {r["id"]: r for r in read_results(out)}


def start_served(cwd: Path, batch: Path, config: Path, *args: str) -> Served:
    """`anvil run BATCH --config CONFIG ARGS --serve 127.0.0.1:PORT`, once its first snapshot is
    stored (before that the API says state "starting")."""
    port = free_port()
    stderr_path = cwd / "run.stderr"
    cmd = anvil_cmd("run", str(batch), "--config", str(config), *args, "--serve", f"127.0.0.1:{port}")
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env={**cli_env(), "ANVIL_API_TOKEN": TOKEN},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    served = Served(proc, Api(f"http://127.0.0.1:{port}"), batch, config, cwd, stderr_path)
    try:
        wait_for(lambda: served.api.up() or proc.poll() is not None, what="the API answering")
        wait_for(
            lambda: proc.poll() is not None or served.api.status()["state"] != "starting",
            what="a live status",
        )
        assert proc.poll() is None, f"anvil run exited {proc.returncode}:\n{served.stderr()}"
    except BaseException:
        served.finish(timeout_s=0.1)
        raise
    return served


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(latency_ms=200, seed=3)).start_thread() as server:
        yield server


@pytest.fixture
def serve(tmp_path: Path, sim: SimServer) -> Iterator[Callable[[], Served]]:
    """Starts `anvil run BATCH --serve 127.0.0.1:PORT` and waits until the API answers."""
    started: list[Served] = []

    def start() -> Served:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(N_JOBS)])
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            scaling={"workers": 1, "max_agents": AGENTS, "max_concurrent_jobs": AGENTS, "min_agents": 1},
        )
        served = start_served(tmp_path, batch, config)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()


def _succeeded(state_dir: Path) -> int:
    with contextlib.closing(sqlite3.connect(state_dir / "journal.sqlite", timeout=5)) as db:
        return int(db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'").fetchone()[0])


def _arrived(sim: SimServer) -> int:
    stats = sim.stats()
    return int(stats["requests"]) + int(stats["in_flight"])


def test_status_and_metrics_while_running_then_drain_exits_130(serve: Callable[[], Served]) -> None:
    run = serve()
    assert run.api.request("GET", "/status", token="wrong-token")[0] == 401
    status = run.api.status()
    assert status["run_id"] and status["counts"]["total"] == N_JOBS
    assert {"metrics", "agents", "governor"} <= status.keys()
    assert status["agents"]["limit"] == AGENTS
    code, text = run.api.get("/metrics")
    assert code == 200
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"anvil_jobs", "anvil_agents_limit", "anvil_queue_depth"} <= names
    assert run.api.post("/drain") == (200, {"ok": True, "draining": True})
    assert run.finish() == ExitCode.INTERRUPTED, run.stderr()
    assert "resume" in run.stderr()
    results = run.export()
    assert any(r["status"] == "pending" for r in results.values())  # drained early: resumable


@pytest.mark.slow  # a whole run or several: the slow tier (CI runs it after the default suite)
def test_jobs_posted_over_http_run_and_are_exported(serve: Callable[[], Served]) -> None:
    run = serve()
    anvil_job = {"id": "api-extra", "prompt": "added over HTTP", "model": MODEL, "max_tokens": 32}
    batches_job = {
        "custom_id": "mb-extra",
        "params": {"model": MODEL, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]},
    }
    assert run.api.post("/jobs", {"jobs": [anvil_job, batches_job]}) == (
        202,
        {"accepted": ["api-extra", "mb-extra"]},
    )
    code, body = run.api.post("/jobs", [{"id": "bad", "model": MODEL}])  # no prompt
    assert code == 400 and body["problems"], body
    code, body = run.api.post("/jobs", anvil_job)  # same id again
    assert code == 400 and "api-extra" in json.dumps(body["problems"])
    assert run.api.post("/jobs", [])[0] == 400
    code, job = run.api.get("/jobs/api-extra")
    assert code == 200 and job["state"] in ("pending", "running", "succeeded")
    assert run.api.get("/jobs/no-such-job")[0] == 404
    assert run.finish() == ExitCode.OK, run.stderr()
    results = run.export()
    assert len(results) == N_JOBS + 2 and "bad" not in results
    assert results["api-extra"]["status"] == results["mb-extra"]["status"] == "succeeded"
    assert results["api-extra"]["output"]


@pytest.mark.slow
def test_scale_pause_breakers_resume(serve: Callable[[], Served], sim: SimServer) -> None:
    run = serve()
    assert run.api.post("/scale", {"agents": AGENTS + 100})[0] == 400
    assert run.api.post("/scale", {"agents": "two"})[0] == 400
    assert run.api.post("/scale", {"agents": 1}) == (200, {"agents": 1})
    wait_for(lambda: run.api.status()["agents"]["limit"] == 1, what="agent limit 1")
    assert run.api.post("/pause")[0] == 200
    wait_for(
        lambda: (s := run.api.status())["paused"] is True and s["counts"]["running"] == 0,
        what="paused with nothing in flight",
    )
    done, sent = _succeeded(run.cwd / ".anvil"), _arrived(sim)
    assert done < N_JOBS
    time.sleep(0.5)  # sleep-ok: observing that, while paused, nothing is dispatched or called
    assert (_succeeded(run.cwd / ".anvil"), _arrived(sim)) == (done, sent)
    assert run.api.post(f"/breakers/{MODEL}/open")[0] == 200
    wait_for(
        lambda: run.api.status()["governor"]["breakers"].get(MODEL, {}).get("state") == "open",
        what="breaker open",
    )
    assert run.api.post(f"/breakers/{MODEL}/close")[0] == 200
    wait_for(
        lambda: run.api.status()["governor"]["breakers"][MODEL]["state"] == "closed", what="breaker closed"
    )
    assert run.api.post("/scale", {"agents": AGENTS}) == (200, {"agents": AGENTS})
    assert run.api.post("/resume") == (200, {"ok": True, "paused": False})
    assert run.finish() == ExitCode.OK, run.stderr()
    results = run.export()
    bad = [r for r in results.values() if r["status"] != "succeeded"]
    assert len(results) == N_JOBS and not bad, (bad[:3], run.stderr())


@pytest.mark.slow
def test_a_job_accepted_then_kill_9_runs_on_resume(serve: Callable[[], Served]) -> None:
    run = serve()
    job = {"id": "survivor", "prompt": "accepted just before the crash", "model": MODEL, "max_tokens": 32}
    assert run.api.post("/jobs", job) == (202, {"accepted": ["survivor"]})
    os.kill(run.proc.pid, signal.SIGKILL)  # at once: the 202 promised the job is durable
    run.proc.wait(timeout=10)
    out = run.cwd / "resumed.jsonl"
    resumed = run_cli("run", str(run.batch), "--config", str(run.config), "-o", str(out), cwd=run.cwd)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    results = {r["id"]: r for r in read_results(out)}
    assert len(results) == N_JOBS + 1
    assert results["survivor"]["status"] == "succeeded"
    assert all(r["status"] == "succeeded" for r in results.values())
