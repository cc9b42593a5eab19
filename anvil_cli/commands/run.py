"""`anvil run` and `anvil export`."""

from __future__ import annotations

import inspect
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import typer

from anvil_cli.commands.common import (
    CONFIG_HELP,
    domain_errors,
    err_console,
    is_tty,
    journal_for_reading,
    out_console,
    set_in,
    settings_from,
)
from anvil_cli.config.settings import Settings
from anvil_cli.config.sources import FLAGS
from anvil_cli.engine.journal.store import Journal, RunRow
from anvil_cli.engine.output import iter_result_lines, write_results
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.errors import ConfigError, Problem, UsageError
from anvil_cli.exitcodes import EXIT_CODES_HELP, ExitCode
from anvil_cli.input_limits import int_problem, plain
from anvil_cli.session.preflight import agents_capped, check_output_path
from anvil_cli.session.runner import RunOptions, RunReport, execute_run
from anvil_cli.snapshot.resume_advice import ResumeAdvice, resume_advice
from anvil_cli.snapshot.status import find_run
from anvil_cli.views.dashboard import RunMonitor, make_reporter
from anvil_cli.views.progress import human_summary


def run_command(
    batch: Path = typer.Argument(
        ..., metavar="BATCH", help="Batch file: YAML, templated YAML, or JSONL.", show_default=False
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        metavar="FILE",
        help="Write results here (JSONL, one line per job in batch order, mode 0600).",
    ),
    junit: Path | None = typer.Option(
        None,
        "--junit",
        metavar="FILE",
        help="Also write the run as a JUnit XML report (a test case per job; failed jobs and failed"
        " checks as failures), for CI systems; mode 0600.",
    ),
    config: Path | None = typer.Option(None, "--config", "-c", metavar="FILE", help=CONFIG_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
    fresh: bool = typer.Option(
        False, "--fresh", help="Start a new run instead of resuming this batch's last run."
    ),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Re-queue jobs that failed permanently."),
    simulate: bool = typer.Option(
        False, "--simulate", help="Run against the built-in simulated API (offline, no key, no cost)."
    ),
    budget: float | None = typer.Option(None, "--budget", metavar="USD", help="Spend cap (budget.max_usd)."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        metavar="N",
        help="Worker processes (scaling.workers; default: one per 24,000 requests/min the limits"
        " allow, at most one per CPU).",
    ),
    agents: int | None = typer.Option(
        None,
        "--agents",
        min=1,
        metavar="N",
        help="Concurrent agents at most (scaling.max_agents and max_concurrent_jobs).",
    ),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", metavar="DIR", help="Where the journal lives (default .anvil)."
    ),
    progress_interval: float | None = typer.Option(
        None, "--progress-interval", metavar="SECONDS", help="Seconds between progress lines off a terminal."
    ),
    grace: float | None = typer.Option(
        None, "--grace", metavar="SECONDS", help="Seconds to let calls in flight finish after Ctrl-C."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output; only the summary."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Off a terminal, also the low-severity ALERT lines."
    ),
    no_dashboard: bool = typer.Option(
        False,
        "--no-dashboard",
        help="Plain progress lines (every run.progress_interval_s), even on a terminal.",
    ),
    mode: Literal["messages", "batches"] = typer.Option(
        "messages",
        "--mode",
        metavar="messages|batches",
        help="messages (live calls) or batches (Message Batches API, 50% off).",
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Don't answer from the result cache."),
    backend: Literal["local", "ray"] | None = typer.Option(
        None,
        "--backend",
        metavar="local|ray",
        help="Where workers run (run.backend): local processes, or actors on a Ray cluster (the"
        " `ray` extra; the conductor, journal and results stay here).",
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        metavar="ADDRESS",
        help="With --backend ray: auto, HOST:PORT or ray://HOST:PORT (ray.address).",
    ),
    governor: str | None = typer.Option(
        None,
        "--governor",
        metavar="NAME",
        help="With --backend ray: share the governor NAME (rate limits and budget) with every run"
        " that names it (ray.governor).",
    ),
    fail_under: float | None = typer.Option(
        None,
        "--fail-under",
        metavar="RATE",
        help="A CI gate: exit 1 when the pass rate of the answers' checks (0..1, e.g. 0.95) is"
        " lower once the run has finished (checks.fail_under).",
    ),
    serve: str | None = typer.Option(
        None,
        "--serve",
        metavar="[HOST:]PORT",
        help="Serve the HTTP control API (status, metrics, add jobs, scale, pause, drain) on "
        "127.0.0.1 unless HOST is given. Bearer token from ANVIL_API_TOKEN, else generated into the "
        "state dir and printed once.",
    ),
) -> None:
    """Run a batch as fast as the rate limits allow; resume it if it was interrupted.

    Every result is committed to the journal (state dir) as it arrives, so a crash or Ctrl-C
    loses nothing: run the same command again to continue. First Ctrl-C stops cleanly (calls in
    flight may finish); a second aborts at once.
    """
    overrides: dict[str, Any] = {}
    set_in(overrides, "budget.max_usd", budget)
    set_in(overrides, "scaling.workers", workers)
    set_in(overrides, "state_dir", str(state_dir) if state_dir else None)
    set_in(overrides, "run.progress_interval_s", progress_interval)
    set_in(overrides, "run.grace_period_s", grace)
    set_in(overrides, "cache.enabled", False if no_cache else None)
    set_in(overrides, "run.backend", backend)
    set_in(overrides, "ray.address", ray_address)
    set_in(overrides, "ray.governor", governor)
    set_in(overrides, "checks.fail_under", fail_under)
    shown = Shown(json_out=json_out, quiet=quiet, verbose=verbose, no_dashboard=no_dashboard)
    with domain_errors():
        opts = RunOptions(
            batch=batch,
            output=output,
            junit=junit,
            fresh=fresh,
            retry_failed=retry_failed,
            simulate=simulate,
            mode=mode,
            serve=_serve_at(serve),
            command=["anvil", *sys.argv[1:]],
        )
        settings = _with_agents(settings_from(config, overrides, variables=True), agents)
        report = _run(settings, opts, shown)
        _github_outputs(settings, report)
        advice = _resume_advice(settings, report)
    _print_report(report, shown, advice)
    raise typer.Exit(int(report.exit_code))


@dataclass(frozen=True)
class Shown:
    """How `anvil run` shows itself: the views while it runs, the summary after."""

    json_out: bool  # --json: the summary on stdout, machine-readable
    quiet: bool
    verbose: bool
    no_dashboard: bool


def _serve_at(serve: str | None) -> tuple[str, int] | None:
    """`--serve [HOST:]PORT` as (host, port)."""
    if serve is None:
        return None
    from anvil_cli.views.api.auth import parse_serve

    return parse_serve(serve)


def _with_agents(settings: Settings, agents: int | None) -> Settings:
    """`--agents N` caps agents (scaling.max_agents and max_concurrent_jobs; the floor follows it
    down if needed): applied to the loaded settings, as a flag wins over every other source."""
    if agents is None:
        return settings
    problem = int_problem(agents)  # as the loader refuses any flag's integer beyond 64 bits
    if problem is not None:
        raise ConfigError([Problem(FLAGS, problem, field="scaling.max_agents")])
    return agents_capped(settings, agents)


def _run(settings: Settings, opts: RunOptions, shown: Shown) -> RunReport:
    """The run, with its views on stderr and Ctrl-C handled for the rest of the command."""
    reporter = make_reporter(
        settings,
        tty=is_tty(),
        quiet=shown.quiet,
        verbose=shown.verbose,
        no_dashboard=shown.no_dashboard,
        console=err_console(),
    )
    monitor = RunMonitor(settings, reporter, batch_path=str(opts.batch.resolve()))
    # installed for the rest of the command: a late Ctrl-C is counted, never a traceback
    signals = SignalState().install()
    try:
        return execute_run(settings, opts, signals=signals, monitor=monitor)
    finally:
        reporter.stop()


def _github_outputs(settings: Settings, report: RunReport) -> None:
    """In GitHub Actions: the step summary and the annotations (views/ci/github.py)."""
    if not os.environ.get("GITHUB_STEP_SUMMARY") and os.environ.get("GITHUB_ACTIONS") != "true":
        return
    from anvil_cli.views.ci.github import github_outputs

    try:
        journal = Journal.open_existing(settings.state_dir)
        if journal is None:
            return
        with journal:
            note = github_outputs(journal, report.run_id, report.summary, os.environ, sys.stderr)
    except sqlite3.Error as exc:  # the journal failed the run already: the run's report says so
        note = f"no GitHub step summary or annotations: the journal cannot be read ({exc})"
    if note:
        report.notes.append(note)


def _resume_advice(settings: Settings, report: RunReport) -> ResumeAdvice | None:
    """The command that resumes this run, as `anvil status` gives it (`resume_advice`)."""
    if report.exit_code not in (ExitCode.STOPPED, ExitCode.INTERRUPTED):
        return None
    journal = Journal.open_existing(settings.state_dir)
    if journal is None:
        return None
    with journal:
        row = journal.get_run(report.run_id)
        return resume_advice(journal, row, report.state) if row is not None else None


def _print_report(report: RunReport, shown: Shown, advice: ResumeAdvice | None) -> None:
    console = err_console()
    for note in report.notes:
        if not shown.quiet:
            console.print(f"note: {plain(note)}", markup=False)
    if report.message:
        # a server's or a tool's words may be in it: escaped; commands stay whole (no wrapping)
        console.print(f"stopped: {plain(report.message)}", markup=False, soft_wrap=True)
    if shown.json_out:
        summary = {**report.summary, "resume_command": advice.command if advice else None}
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        human_summary(out_console(), report.summary)
        gate = report.summary.get("fail_under")
        if gate:  # the CI gate's verdict (session/finish.py:pass_rate_gate)
            out_console().print(f"  {gate['message']}", markup=False, highlight=False)
    if advice is not None:
        console.print(f"resume with: {advice.command}", markup=False, soft_wrap=True)
        if advice.why:
            console.print(f"  (--budget {advice.budget_usd:.2f}: {advice.why})", markup=False, soft_wrap=True)


def export_command(
    run: str | None = typer.Argument(None, metavar="RUN", help="Run id or prefix (default: the latest run)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", metavar="FILE", help="JSONL file to write (mode 0600)."
    ),
    junit: Path | None = typer.Option(
        None, "--junit", metavar="FILE", help="JUnit XML report to write (mode 0600), as `run --junit`."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", metavar="FILE", help=CONFIG_HELP),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", metavar="DIR", help="Where the journal lives (default .anvil)."
    ),
) -> None:
    """Write a run's results from the journal, at any time (also while it runs). `-o -` writes
    them to standard output."""
    overrides: dict[str, Any] = {}
    set_in(overrides, "state_dir", str(state_dir) if state_dir else None)
    with domain_errors():
        if output is None and junit is None:
            raise UsageError(
                "anvil export: give -o FILE (the results, JSONL), --junit FILE (a JUnit report), or both"
            )
        settings = settings_from(config, overrides)
        for path, flag in ((output, "-o"), (junit, "--junit")):
            if path is not None and str(path) != "-":
                check_output_path(path, flag)  # a missing directory is an error, not created: exit 2
        journal = journal_for_reading(settings)
        with journal:
            row = find_run(journal, run)
            if output is not None:
                _export_results(journal, row.id, output)
            if junit is not None:
                _export_junit(journal, row, junit)


def _export_results(journal: Journal, run_id: str, output: Path) -> None:
    to_stdout = str(output) == "-"
    if to_stdout:
        n = _write_stdout(iter_result_lines(journal, run_id))
    else:
        try:
            n = write_results(journal, run_id, output)
        except OSError as exc:  # nothing is written (all or nothing): say why, no traceback
            reason = exc.strerror or exc
            raise UsageError(f"-o {output}: cannot write the results ({reason})") from None
    where = "stdout" if to_stdout else str(output)
    err_console().print(f"wrote {n} result(s) of run {run_id} to {where}", markup=False)


def _export_junit(journal: Journal, row: RunRow, junit: Path) -> None:
    """`anvil export --junit FILE`: the run as `anvil run --junit` writes it (`-` for stdout)."""
    from anvil_cli.views.ci.junit import junit_xml, write_junit

    if str(junit) == "-":
        sys.stdout.write(junit_xml(journal, row) + "\n")
        sys.stdout.flush()
        return
    try:
        write_junit(journal, row, junit)
    except OSError as exc:
        raise UsageError(f"--junit {junit}: cannot write the report ({exc.strerror or exc})") from None
    err_console().print(f"wrote the JUnit report of run {row.id} to {junit}", markup=False)


def _write_stdout(lines: Iterator[str]) -> int:
    n = 0
    out = sys.stdout
    for line in lines:
        out.write(line + "\n")
        n += 1
    out.flush()
    return n


def register(app: typer.Typer) -> None:
    """Add `anvil run` and `anvil export` to the app."""
    app.command(
        "run",
        help=inspect.cleandoc(run_command.__doc__ or "") + "\n\n" + EXIT_CODES_HELP,
        short_help="Run a batch as fast as the rate limits allow, or resume it.",
    )(run_command)
    app.command("export", short_help="Write a run's results from the journal as JSONL.")(export_command)
