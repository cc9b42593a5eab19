"""How a run's answers fared against their checks, in every view: the summary
(`snapshot/checks.py`) from job rows the real journal wrote (`record_result` with `CheckRecord`s
made by the real schema and judge functions), `anvil status --json`, `GET /status` and
`GET /metrics` (through the real API server), the dashboard's and the progress line's figures,
`anvil status`'s block and the report's data; and a run without checks unchanged by any of it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from anvil_cli.cli import app
from anvil_cli.config.settings import ChecksSettings, Settings
from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.journal.store import RUN_FINISHED, Journal, journal_path
from anvil_cli.engine.outcomes import JobError, JobResult
from anvil_cli.engine.ticker import Ticker
from anvil_cli.jobs.job import Job
from anvil_cli.policy.checks.judge import read_judgement
from anvil_cli.policy.checks.record import CheckRecord
from anvil_cli.policy.checks.schema import check_answer
from anvil_cli.policy.checks.spec import specs_of
from anvil_cli.session.control import RunControl
from anvil_cli.snapshot.checks import summarize_checks
from anvil_cli.snapshot.checks_journal import tally_of_run
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.status import status_json
from anvil_cli.views.api.server import ApiServer
from anvil_cli.views.checks import checks_line, render_checks
from anvil_cli.views.dashboard import QuietReporter, RunMonitor
from anvil_cli.views.progress import snapshot_line
from anvil_cli.views.report import render_html, report_data
from tests.snapshot_support import T0, WALL0, engine_state, feed
from tests.test_api_e2e import NO_PROXY, TOKEN, free_port

HAIKU = "claude-haiku-4-5"
SONNET = "claude-sonnet-4-5"
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
JUDGE = {
    "name": "quality",
    "kind": "judge",
    "rubric": "Is it right?",
    "model": None,
    "scale": [1, 5],
    "pass_at": 4,
}


LINE = "checks: 1/4 passed (25.0%) · mean score 0.53 · 3 re-ask(s) ($0.0030) · judges $0.0015"


def _job(seq: int, job_id: str, model: str, team: str, variant: str | None, checked: bool) -> Job:
    return Job(
        id=job_id,
        seq=seq,
        messages=[{"role": "user", "content": f"question {seq}"}],
        model=model,
        max_tokens=64,
        metadata={"team": team},
        output_schema=SCHEMA if checked else None,
        checks=(JUDGE,) if checked else (),
        variant=variant,
    )


JOBS = [
    _job(0, "q1@short", HAIKU, "a", "short", True),  # valid, judged 5/5: passes (after a re-ask)
    _job(1, "q1@long", SONNET, "b", "long", True),  # valid, judged 2/5: fails
    _job(2, "q2@short", HAIKU, "a", "short", True),  # never valid JSON: fails (the job failed)
    _job(3, "q2@long", SONNET, "b", "long", True),  # valid, the judge's reply is not a grade: fails
    _job(4, "plain", HAIKU, "a", None, False),  # no checks
    _job(5, "q3@long", SONNET, "b", "long", True),  # never ran
]


def _record(job: Job, answer: str, judge_reply: str | None, reasks: int, judge_cost: float) -> CheckRecord:
    """What a worker records: the schema's verdict, then each judge's (the real policy functions)."""
    assert job.output_schema is not None
    results = [check_answer(job.output_schema, answer).as_check()]
    if judge_reply is not None:
        results += [read_judgement(spec, HAIKU, judge_reply) for spec in specs_of(job.checks)]
    return CheckRecord(
        tuple(results), reasks=reasks, reask_cost_usd=0.001 * reasks, judge_cost_usd=judge_cost
    )


def _results() -> list[JobResult]:
    ok = '{"answer": "yes"}'
    grade = '{{"score": {}, "reason": "because"}}'.format
    log = (Attempt(1, HAIKU, 200, latency_s=0.2),)
    never = JobError("output_schema", "the answer never matched its schema")
    return [
        JobResult(0, True, HAIKU, 2, output=ok, cost_usd=0.01, attempt_log=log, latency_s=0.5,
                  checks=_record(JOBS[0], ok, grade(5), 1, 0.0005)),
        JobResult(1, True, SONNET, 1, output=ok, cost_usd=0.02, attempt_log=log, latency_s=0.5,
                  checks=_record(JOBS[1], ok, grade(2), 0, 0.0005)),
        JobResult(2, False, HAIKU, 3, output="not json", cost_usd=0.005, attempt_log=log, latency_s=0.5,
                  error=never, checks=_record(JOBS[2], "not json", None, 2, 0.0)),
        JobResult(3, True, SONNET, 1, output=ok, cost_usd=0.03, attempt_log=log, latency_s=0.5,
                  checks=_record(JOBS[3], ok, "I think it is fine", 0, 0.0005)),
        JobResult(4, True, HAIKU, 1, output="hi", cost_usd=0.002, attempt_log=log, latency_s=0.5),
    ]  # fmt: skip


def _group(checked: int, passed: int, mean: float | None, cost: float, jobs: int) -> dict[str, Any]:
    rate = None if not checked else round(passed / checked, 6)
    return {"checked": checked, "passed": passed, "pass_rate": rate, "mean_score": mean, "cost_usd": cost,
            "jobs": jobs}  # fmt: skip


# by hand, from the rows above: each job's score is the mean of its checks' (schema 1 or 0; the
# judge's grade on 1..5 mapped onto 0..1: 5 -> 1.0, 2 -> 0.25, no grade -> 0.0)
SCORES = {0: (1.0 + 1.0) / 2, 1: (1.0 + 0.25) / 2, 2: 0.0, 3: (1.0 + 0.0) / 2}
EXPECTED: dict[str, Any] = {
    "checked": 4,
    "passed": 1,
    "pass_rate": 0.25,
    "mean_score": round(sum(SCORES.values()) / 4, 6),
    "reasks": 3,
    "reask_cost_usd": 0.003,
    "judge_cost_usd": 0.0015,
    "per_check": {
        "quality": {"passed": 1, "total": 3, "mean_score": round((1.0 + 0.25 + 0.0) / 3, 6)},
        "schema": {"passed": 3, "total": 4, "mean_score": 0.75},
    },
    "by_model": {
        HAIKU: _group(2, 1, round((SCORES[0] + SCORES[2]) / 2, 6), 0.017, 3),
        SONNET: _group(2, 0, round((SCORES[1] + SCORES[3]) / 2, 6), 0.05, 3),
    },
    "by_variant": {
        "long": _group(2, 0, round((SCORES[1] + SCORES[3]) / 2, 6), 0.05, 3),
        "short": _group(2, 1, round((SCORES[0] + SCORES[2]) / 2, 6), 0.015, 2),
    },
    "by": {
        "team": {
            "a": _group(2, 1, round((SCORES[0] + SCORES[2]) / 2, 6), 0.017, 3),
            "b": _group(2, 0, round((SCORES[1] + SCORES[3]) / 2, 6), 0.05, 3),
        }
    },
}


@dataclass
class Ran:
    state_dir: Path
    run_id: str
    snapshot: dict[str, Any]  # the last live snapshot the monitor built


def _run(tmp_path: Path, jobs: list[Job], results: list[JobResult], by: list[str]) -> Ran:
    """The run through the real journal, metrics, monitor and Ticker, as `anvil run` drives them."""
    state_dir = tmp_path / ".anvil"
    batch = tmp_path / "batch.jsonl"
    batch.write_text("")
    settings = Settings(checks=ChecksSettings(by=by))
    with Journal.open(state_dir) as journal:
        run_id = journal.create_run(str(batch), "sha", jobs)
        monitor = RunMonitor(settings, QuietReporter(), batch_path=str(batch), wall_clock=lambda: WALL0)
        metrics = RunMetrics(total=len(jobs), started_at=T0)
        ticker = Ticker(journal, run_id, monitor)
        snap: dict[str, Any] = {}
        for n, result in enumerate(results):
            journal.record_result(run_id, result)
            feed(metrics, result, T0 + n)
            snap = dict(ticker.tick(engine_state(run_id=run_id, in_flight=0), metrics, T0 + n))
        journal.set_run_state(run_id, RUN_FINISHED, ended=True)
    return Ran(state_dir, run_id, snap)


@pytest.fixture
def ran(tmp_path: Path) -> Ran:
    return _run(tmp_path, JOBS, _results(), ["team"])


@pytest.fixture
def journal(ran: Ran) -> Iterator[Journal]:
    with Journal.open(ran.state_dir) as j:
        yield j


def test_the_summary_of_the_journals_rows_is_what_they_add_up_to(ran: Ran, journal: Journal) -> None:
    summary = summarize_checks(journal.iter_results(ran.run_id), ["team"])
    assert summary is not None
    assert summary.to_json() == EXPECTED
    assert summary.pass_rate == 0.25
    # read once, as an iterator: one pass
    assert summarize_checks(iter(list(journal.iter_results(ran.run_id))), ["team"]) == summary


def test_no_checked_job_no_summary(ran: Ran, journal: Journal) -> None:
    rows = [r for r in journal.iter_results(ran.run_id) if r["checks"] is None]
    assert rows and summarize_checks(rows, ["team"]) is None
    assert summarize_checks([], ()) is None


def test_status_json_and_anvil_status_json_show_exactly_those_numbers(ran: Ran, journal: Journal) -> None:
    # the run's own keys (checks.by of its settings, kept in its snapshot) when none are given
    assert status_json(journal, ran.run_id)["checks"] == EXPECTED
    assert status_json(journal, ran.run_id, checks_by=[])["checks"]["by"] == {}  # asked for none
    runner = CliRunner()
    result = runner.invoke(app, ["status", ran.run_id, "--json", "--state-dir", str(ran.state_dir)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["checks"] == EXPECTED
    text = runner.invoke(
        app,
        ["status", ran.run_id, "--state-dir", str(ran.state_dir)],
        env={"COLUMNS": "120", "NO_COLOR": "1"},
    )
    assert text.exit_code == 0, text.output
    assert (
        "checks: 1/4 passed (25.0%) · mean score 0.53 · 3 re-ask(s) ($0.0030) · judges $0.0015" in text.output
    )
    assert re.search(r"metadata\.team\s+checked\s+passed\s+pass rate", text.output)
    assert re.search(r"short\s+2\s+1\s+50\.0%", text.output)


def _http_get(url: str) -> tuple[str, bytes]:
    import urllib.request

    req = urllib.request.Request(url)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with NO_PROXY.open(req, timeout=10) as resp:
        return resp.headers.get("Content-Type", ""), resp.read()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_get_status_and_metrics_show_exactly_those_numbers(ran: Ran) -> None:
    control = RunControl(journal_path(ran.state_dir), ran.run_id, agent_min=1, agent_max=4)
    server = ApiServer(control, "127.0.0.1", free_port(), TOKEN).start()
    try:
        _, body = _http_get(server.url + "/status")
        assert json.loads(body)["checks"] == EXPECTED
        _, metrics = _http_get(server.url + "/metrics")
    finally:
        server.stop()
        control.close()
    got = _samples(metrics.decode())
    assert got[("anvil_checks_total", (("check", "schema"), ("result", "pass")))] == 3
    assert got[("anvil_checks_total", (("check", "schema"), ("result", "fail")))] == 1
    assert got[("anvil_checks_total", (("check", "quality"), ("result", "pass")))] == 1
    assert got[("anvil_checks_total", (("check", "quality"), ("result", "fail")))] == 2
    assert got[("anvil_checks_pass_rate", (("model", ""), ("variant", "")))] == 0.25
    assert got[("anvil_checks_pass_rate", (("model", HAIKU), ("variant", "")))] == 0.5
    assert got[("anvil_checks_pass_rate", (("model", SONNET), ("variant", "")))] == 0.0
    assert got[("anvil_checks_pass_rate", (("model", ""), ("variant", "short")))] == 0.5
    assert got[("anvil_checks_pass_rate", (("model", ""), ("variant", "long")))] == 0.0
    assert got[("anvil_reasks_total", ())] == 3
    assert got[("anvil_judge_cost_usd_total", ())] == pytest.approx(0.0015)


def test_the_report_carries_the_checks_table(ran: Ran, journal: Journal) -> None:
    html = render_html(report_data(journal, ran.run_id, now=T0))
    found = re.search(r'<script type="application/json" id="anvil-data">(.*?)</script>', html, re.S)
    assert found is not None
    assert json.loads(found.group(1))["status"]["checks"] == EXPECTED
    assert '<table id="checks-table">' in html and "renderChecks" in html  # the page draws it
    lines = render_checks(EXPECTED)
    assert lines[0] == LINE
    assert any(line.split()[:4] == [HAIKU, "2", "1", "50.0%"] for line in lines)


def test_the_live_snapshot_counts_this_sessions_results(ran: Ran) -> None:
    live = ran.snapshot["checks"]
    # the figures of every result (variant and metadata are the journal's to give: by keys only)
    for key in ("checked", "passed", "pass_rate", "mean_score", "reasks", "reask_cost_usd", "judge_cost_usd",
                "per_check"):  # fmt: skip
        assert live[key] == EXPECTED[key], key
    # by model: the jobs finished in the session (the journal's count every job, q3@long unrun too)
    sonnet = {**EXPECTED["by_model"][SONNET], "jobs": 2}
    assert live["by_model"] == {HAIKU: EXPECTED["by_model"][HAIKU], SONNET: sonnet}
    assert live["by_variant"] == {} and live["by"] == {"team": {}}
    assert "checks 25.0% passed (1/4)" in snapshot_line(ran.snapshot)  # type: ignore[arg-type]
    assert checks_line(live) == checks_line(EXPECTED)


def test_a_resumed_run_goes_on_from_the_journals_checks(ran: Ran, journal: Journal) -> None:
    tally = tally_of_run(journal, ran.run_id)
    summary = tally.summary()
    assert summary is not None and summary.checked == 4 and summary.passed == 1
    assert summary.to_json()["by_model"] == EXPECTED["by_model"]


def test_a_run_without_checks_shows_none_of_it(tmp_path: Path) -> None:
    jobs = [_job(0, "a", HAIKU, "a", None, False), _job(1, "b", HAIKU, "b", None, False)]
    log = (Attempt(1, HAIKU, 200, latency_s=0.2),)
    results = [JobResult(n, True, HAIKU, 1, output="x", cost_usd=0.001, attempt_log=log) for n in range(2)]
    plain = _run(tmp_path, jobs, results, ["team"])
    assert "checks" not in plain.snapshot
    assert "checks" not in snapshot_line(plain.snapshot)  # type: ignore[arg-type]
    with Journal.open(plain.state_dir) as journal:
        assert "checks" not in status_json(journal, plain.run_id, checks_by=["team"])
        assert summarize_checks(journal.iter_results(plain.run_id), ["team"]) is None
        assert render_checks(None) == [] and checks_line(None) is None
    control = RunControl(journal_path(plain.state_dir), plain.run_id, agent_min=1, agent_max=4)
    server = ApiServer(control, "127.0.0.1", free_port(), TOKEN).start()
    try:
        _, metrics = _http_get(server.url + "/metrics")
    finally:
        server.stop()
        control.close()
    assert b"anvil_checks" not in metrics and b"anvil_reasks" not in metrics and b"anvil_judge" not in metrics
