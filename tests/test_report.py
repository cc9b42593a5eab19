"""`anvil report`: one self-contained HTML file from the journal (written by the real journal,
Ticker and metrics), inert whatever the jobs hold, written atomically 0600, with clear errors."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
import stat
import subprocess
from pathlib import Path

from anvil_cli.config.settings import Settings
from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.journal.store import RUN_FINISHED, RUN_STOPPED, Journal
from anvil_cli.engine.outcomes import JobError, JobResult
from anvil_cli.engine.ticker import Ticker
from anvil_cli.jobs.loader import load_batch
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.views.dashboard import QuietReporter, RunMonitor
from anvil_cli.views.report import build_report, default_name
from tests.engine_support import invoke_cli, write_jobs
from tests.snapshot_support import HAIKU, T0, WALL0, engine_state, feed

EVIL = "</script><script>alert(1)</script><!--"
EVIL_ID = "job-" + EVIL
EVIL_MESSAGE = f"bad request: {EVIL} & <img src=x onerror=alert(2)>"


def _run(tmp_path: Path, *, failed: int = 1) -> tuple[Path, str]:
    """A finished run of 3 jobs, the last `failed` of them failed (one's id and message hostile),
    ticked 4 times by the real Ticker."""
    batch = write_jobs(tmp_path / "b.jsonl", [{"id": "ok-1", "prompt": "a"}, {"id": "ok-2", "prompt": "b"},
                                              {"id": EVIL_ID, "prompt": "c"}])  # fmt: skip
    state_dir = tmp_path / ".anvil"
    with Journal.open(state_dir) as journal:
        run_id = journal.create_run(str(batch), "sha", load_batch(batch))
        monitor = RunMonitor(Settings(), QuietReporter(), batch_path=str(batch), wall_clock=lambda: WALL0)
        ticker, metrics = Ticker(journal, run_id, monitor), RunMetrics(total=3, started_at=T0)
        for seq in range(3):
            ok = seq < 3 - failed
            etype = None if ok else "invalid_request_error"
            error = None if ok else JobError("invalid_request_error", EVIL_MESSAGE, 400)
            code = 200 if ok else 400
            log = (Attempt(1, HAIKU, code, latency_s=0.3, error_type=etype, message=EVIL_MESSAGE),)
            result = JobResult(seq, ok, HAIKU, 1, output="out" if ok else None, error=error,
                               attempt_log=log, cost_usd=0.001, latency_s=0.4)  # fmt: skip
            feed(metrics, result, T0 + seq)
            journal.record_result(run_id, result)
            ticker.tick(engine_state(run_id=run_id, in_flight=0), metrics, T0 + seq)
        ticker.tick(engine_state(run_id=run_id, in_flight=0, phase="finished"), metrics, T0 + 3)
        journal.set_run_state(run_id, RUN_FINISHED, ended=True, summary={"counts": {"total": 3}})
    return state_dir, run_id


def _embedded(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="anvil-data">(.*?)</script>', html, re.S)
    assert found is not None
    return json.loads(found.group(1))


def test_the_report_is_one_inert_self_contained_file(tmp_path: Path) -> None:
    state_dir, run_id = _run(tmp_path)
    out = tmp_path / "out" / "report.html"
    with Journal.open(state_dir) as journal:
        assert build_report(journal, run_id[:12], out) == (run_id, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temp file left
    html = out.read_text()
    # four scripts (the data, uPlot, charts, app), each closed once: nothing a job holds ends one
    assert len(re.findall(r"<script", html, re.I)) == 4 and len(re.findall(r"</script", html, re.I)) == 4
    assert "alert(1)" in html and EVIL not in html and "<img src=x" not in html and "<!--" not in html
    # loads nothing: no address in an attribute but the empty data: icon
    assert re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html) == ["data:,"]
    data = _embedded(html)
    assert data["status"]["run_id"] == run_id and data["status"]["state"] == "finished"
    assert data["status"]["counts"] == {"total": 3, "done": 3, "succeeded": 2, "failed": 1, "pending": 0,
                                        "running": 0}  # fmt: skip
    assert "governor" not in data["status"]
    assert [f["id"] for f in data["failures"]] == [EVIL_ID] and data["failures"][0]["message"] == EVIL_MESSAGE
    assert data["failure_count"] == 1 and data["sample_count"] == len(data["samples"]) == 4
    assert data["samples"][-1]["state"] == "finished"
    # the policy lets exactly the inline scripts and styles run, by hash, and connects nowhere
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp is not None and "'unsafe-inline'" not in csp.group(1) and "connect-src" not in csp.group(1)
    assert csp.group(1).startswith("default-src 'none';")
    for kind in ("script", "style"):
        for body in re.findall(rf"<{kind}>(.*?)</{kind}>", html, re.S):
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in csp.group(1), kind


def test_an_interrupted_run_is_reported_as_such(tmp_path: Path) -> None:
    state_dir, run_id = _run(tmp_path, failed=0)
    dead = subprocess.Popen(["true"])  # a pid that has exited: the run's process died
    dead.wait()
    with Journal.open(state_dir) as journal:
        journal.db.execute("UPDATE runs SET state = 'running', ended_at = NULL, pid = ? WHERE id = ?",
                           (dead.pid, run_id))  # fmt: skip
        _, path = build_report(journal, None, tmp_path / "r.html")
    data = _embedded(path.read_text())
    assert data["status"]["state"] == "interrupted" and data["status"]["resume_command"]
    assert data["failures"] == [] and data["failure_count"] == 0


def test_a_stopped_run_is_reported_with_why_and_how_to_resume(tmp_path: Path) -> None:
    state_dir, run_id = _run(tmp_path)
    with Journal.open(state_dir) as journal:
        journal.set_run_state(run_id, RUN_STOPPED, stop_reason="budget: $0.01 reached", ended=True)
        _, path = build_report(journal, run_id, tmp_path / "r.html")
    status = _embedded(path.read_text())["status"]
    assert status["state"] == "stopped" and status["stop_reason"] == "budget: $0.01 reached"
    assert status["resume_command"] and status["counts"]["failed"] == 1


def test_a_journal_from_before_samples_gives_a_report_without_charts(tmp_path: Path) -> None:
    state_dir, run_id = _run(tmp_path)
    with sqlite3.connect(state_dir / "journal.sqlite") as db:
        db.execute("DROP TABLE samples")  # as an older Anvil left it
    done = invoke_cli("report", "-o", str(tmp_path / "r.html"), "--state-dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    data = _embedded((tmp_path / "r.html").read_text())
    assert data["samples"] == [] and data["status"]["run_id"] == run_id


def test_the_command_names_its_file_and_refuses_clearly(tmp_path: Path) -> None:
    state_dir, run_id = _run(tmp_path)
    args = ("--state-dir", str(state_dir))
    done = invoke_cli("report", *args)
    assert done.returncode == 0, done.stderr
    made = tmp_path / default_name(run_id)
    assert made.name == f"anvil-report-{run_id}.html" and made.exists() and run_id in done.stderr
    unknown = invoke_cli("report", "no-such-run", *args)
    assert unknown.returncode == 2 and "no run matches 'no-such-run'" in unknown.stderr
    blocker = tmp_path / "blocker"  # a file where a directory should be: unwritable, even for root
    blocker.write_text("x")
    refused = invoke_cli("report", "-o", str(blocker / "r.html"), *args)
    assert refused.returncode == 2 and "cannot write the report" in refused.stderr
    into_dir = invoke_cli("report", "-o", str(tmp_path), *args)
    assert into_dir.returncode == 2 and "cannot write the report" in into_dir.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # nothing half-written
    helped = invoke_cli("report", "--help")
    assert helped.returncode == 0
    assert "anvil-report-<run id>.html" in " ".join(helped.stdout.split())  # help is re-filled to the width
