"""How a run ends: its state and exit code from how the conductor stopped and what is left, the
summary (this session's figures, the journal's totals), the results file, the run's row in the
journal — or, when the journal itself failed, a report that writes nothing more."""

from __future__ import annotations

import shlex
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from anvil_cli.engine.conductor.core import JOURNAL_ERROR
from anvil_cli.engine.journal.store import (
    FAILED,
    PENDING,
    RUN_FINISHED,
    RUN_INTERRUPTED,
    RUN_STOPPED,
    RUNNING,
    SUCCEEDED,
    Journal,
)
from anvil_cli.engine.ledger.stops import end_for_scopes
from anvil_cli.engine.output import unwritten_message, write_results
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.exitcodes import ExitCode
from anvil_cli.session.context import RunContext
from anvil_cli.snapshot.checks import ChecksSummary
from anvil_cli.snapshot.checks_journal import checks_of_run
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.views.ci.junit import write_junit


@dataclass
class RunReport:
    """The outcome of `anvil run`, for the summary and the exit code."""

    run_id: str
    exit_code: ExitCode
    state: str
    summary: dict[str, Any]
    message: str | None = None
    resumed: bool = False
    notes: list[str] = field(default_factory=list)


def finish(run: RunContext, end: RunEnd, resumed: bool, notes: list[str]) -> RunReport:
    """Record the outcome in the journal and write the results (`-o`); the report."""
    if end.stop_reason == JOURNAL_ERROR:
        return _journal_failed(run, end, notes)
    journal, run_id, opts, settings = run.journal, run.run_id, run.opts, run.settings
    counts = journal.counts(run_id)
    end_for_scopes(journal, run_id, end, counts[PENDING] + counts[RUNNING])  # budget.scopes spent
    code, state = _exit_code(end, counts)
    summary = run_summary(journal, run_id, run.metrics, counts)
    summary.update({"run_id": run_id, "state": state, "stop_reason": end.stop_reason})
    message = end.stop_message
    summary["tool_sandbox"] = settings.run.tool_sandbox  # bwrap, or none: tools ran UNSANDBOXED
    checks = checks_of_run(journal, run_id, settings.checks.by)  # None: no job has checks
    if checks is not None:
        summary["checks"] = checks.to_json()
    if settings.checks.fail_under is not None and state == RUN_FINISHED:
        gate = fail_under_gate(checks, settings.checks.fail_under)
        summary["fail_under"] = gate
        if gate["below"] and code == ExitCode.OK:
            code = ExitCode.CHECKS_BELOW
    if opts.output is not None:
        try:
            write_results(journal, run_id, opts.output)
            summary["output"] = str(opts.output)
        except OSError as exc:  # the results are in the journal: say how to write them; exit 3
            unwritten = unwritten_message(exc, run_id, opts.output, settings.state_dir)
            code = code if code in (ExitCode.STOPPED, ExitCode.INTERRUPTED) else ExitCode.STOPPED
            summary["output_error"] = unwritten
            message = f"{message}; {unwritten}" if message else unwritten
    if opts.junit is not None:  # after the results file, from the journal as well
        unwritten_junit = _write_junit(run, summary)
        if unwritten_junit is not None:
            code = code if code in (ExitCode.STOPPED, ExitCode.INTERRUPTED) else ExitCode.STOPPED
            message = f"{message}; {unwritten_junit}" if message else unwritten_junit
    summary["exit_code"] = int(code)
    journal.set_run_state(run_id, state, stop_reason=end.stop_reason, summary=summary, ended=True)
    return RunReport(run_id, code, state, summary, message, resumed, notes)


def _write_junit(run: RunContext, summary: dict[str, Any]) -> str | None:
    """`--junit FILE`: the run as a JUnit report (views/ci/junit.py); what to say if it could not
    be written (the results are in the journal: `anvil export --junit` writes it later)."""
    path, row = run.opts.junit, run.journal.get_run(run.run_id)
    assert path is not None and row is not None
    try:
        write_junit(run.journal, row, path, ended_at=time.time())
        summary["junit"] = str(path)
        return None
    except OSError as exc:
        command = shlex.join(
            ["anvil", "export", run.run_id, "--junit", str(path), "--state-dir", str(run.settings.state_dir)]
        )
        reason = exc.strerror or type(exc).__name__
        unwritten = f"the JUnit report could not be written to {path} ({reason}); write it with `{command}`"
        summary["junit_error"] = unwritten
        return unwritten


def _exit_code(end: RunEnd, counts: dict[str, int]) -> tuple[ExitCode, str]:
    unfinished = counts[PENDING] + counts[RUNNING]
    if unfinished and end.stop_reason is not None:
        return ExitCode.STOPPED, RUN_STOPPED
    if unfinished:
        return ExitCode.INTERRUPTED, RUN_INTERRUPTED
    if counts[FAILED]:
        return ExitCode.JOBS_FAILED, RUN_FINISHED
    return ExitCode.OK, RUN_FINISHED


def pass_rate_gate(journal: Journal, run_id: str, rate: float) -> dict[str, Any]:
    """`--fail-under RATE` on the run's pass rate (snapshot/checks.py: finished jobs with checks,
    passed when they succeeded and every check passed)."""
    return fail_under_gate(checks_of_run(journal, run_id), rate)


def fail_under_gate(checks: ChecksSummary | None, rate: float) -> dict[str, Any]:
    """The pass rate of `checks` against RATE: below it, exit 1. A run with no checked answer
    has no pass rate: the gate is not applied (and says so)."""
    pass_rate = checks.pass_rate if checks is not None else None
    below = pass_rate is not None and pass_rate < rate
    if pass_rate is None:
        message = f"no answer was checked: --fail-under {rate:.1%} not applied"
    elif below:
        message = f"pass rate {pass_rate:.1%} < {rate:.1%}: exit {int(ExitCode.CHECKS_BELOW)}"
    else:
        message = f"pass rate {pass_rate:.1%} >= {rate:.1%}"
    return {
        "rate": rate,
        "pass_rate": pass_rate,
        "checked": checks.checked if checks is not None else 0,
        "passed": checks.passed if checks is not None else 0,
        "below": below,
        "message": message,
    }


def run_summary(journal: Journal, run_id: str, metrics: RunMetrics, counts: dict[str, int]) -> dict[str, Any]:
    """The run's figures: this session's metrics plus the journal's totals over the whole run."""
    summary = metrics.summary(time.monotonic())
    totals = journal.totals(run_id)
    summary["counts"] = {
        "total": sum(counts.values()),
        "succeeded": counts[SUCCEEDED],
        "failed": counts[FAILED],
        "pending": counts[PENDING] + counts[RUNNING],
    }
    summary["run_cost_usd"] = round(totals["cost_usd"], 6)
    summary["cache_hits"] = journal.cache_hits(run_id)
    summary["tool_errors"] = journal.tool_errors(run_id)  # over the whole run, as `anvil status` says
    return summary


def _journal_failed(run: RunContext, end: RunEnd, notes: list[str]) -> RunReport:
    """The journal refused a write: write nothing more (the run is left `running` in the journal,
    so `anvil status` shows it interrupted and the same command resumes it). The counts are the
    journal's (it still reads), so they match what a resume finds; the spend adds what could not
    be journaled."""
    journal, run_id, metrics = run.journal, run.run_id, run.metrics
    summary = metrics.summary(time.monotonic())
    summary.update({"run_id": run_id, "state": RUN_STOPPED, "exit_code": int(ExitCode.STOPPED)})
    try:
        held = journal.counts(run_id)
        counts = {
            "total": sum(held.values()),
            "succeeded": held[SUCCEEDED],
            "failed": held[FAILED],
            "pending": held[PENDING] + held[RUNNING],
        }
        journaled = journal.totals(run_id)["cost_usd"]
    except sqlite3.Error:  # not even readable: this session's figures are all there is
        done = metrics.done + metrics.already_done
        counts = {
            "total": metrics.total,
            "succeeded": metrics.succeeded + metrics.already_done - metrics.already_failed,
            "failed": metrics.failed + metrics.already_failed,
            "pending": max(0, metrics.total - done),
        }
        journaled = metrics.cost_before_usd + metrics.cost_usd
    summary.update({"stop_reason": end.stop_reason, "counts": counts, "cache_hits": 0})
    summary["run_cost_usd"] = round(journaled + end.unjournaled_usd, 6)
    summary["unjournaled_usd"] = round(end.unjournaled_usd, 6)
    return RunReport(run_id, ExitCode.STOPPED, RUN_STOPPED, summary, end.stop_message, True, notes)
