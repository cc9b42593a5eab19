"""`anvil run` end to end, composed: check before anything is written (`preflight`), validate,
open or resume the run in the journal (`resume`), serve its API (`serve`), conduct it
(`conduct`), then record the outcome and write the results (`finish`)."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import replace
from multiprocessing.context import BaseContext

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.settings import Settings
from anvil_cli.engine.governor_host import early
from anvil_cli.engine.governor_host.manager import begin_governor
from anvil_cli.engine.journal.store import FAILED, PENDING, SUCCEEDED, Journal
from anvil_cli.engine.modes.batches.endpoint import require_batches_endpoint
from anvil_cli.engine.process.forkserver import governor_context, worker_context
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.engine.ticker import Monitor, Ticker
from anvil_cli.engine.worker.tools.sandbox import UNSANDBOXED_NOTE
from anvil_cli.session.conduct import conduct
from anvil_cli.session.context import RunContext, RunOptions, run_endpoints
from anvil_cli.session.finish import RunReport, finish
from anvil_cli.session.preflight import (
    check_output_path,
    check_state_dir,
    fit_agents_to_fd_limit,
    require_ray,
)
from anvil_cli.session.resume import batch_sha, count_unjournaled, file_sha256, open_run, validated_jobs
from anvil_cli.session.serve import listen_for_api, start_api
from anvil_cli.session.simulated import simulated_endpoints, simulated_poll, start_simulator
from anvil_cli.snapshot.checks_journal import tally_of_run
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.monitor import NoScreen, RunMonitor

__all__ = ["RunOptions", "RunReport", "execute_run"]  # what `execute_run` takes and gives, beside it


def execute_run(
    settings: Settings,
    opts: RunOptions,
    signals: SignalState | None = None,
    monitor: Monitor | None = None,
) -> RunReport:
    """Run (or resume) the batch; returns the report. Raises AnvilError on bad input.

    `signals`: handlers the caller installed for the whole command (so a late Ctrl-C during
    teardown is counted, not a traceback); without it they are installed for the run only.
    `monitor`: the views (`dashboard.RunMonitor`); without one, a silent one still builds the
    snapshot that `anvil status` and the API read."""
    if opts.mode == "batches":  # the Message Batches API is Anthropic's only: refused before anything
        require_batches_endpoint(settings)
    endpoints = run_endpoints(settings, opts)  # once, here: every worker, local or remote, is handed them
    settings, fd_note = fit_agents_to_fd_limit(settings)
    check_state_dir(settings.state_dir)  # before anything is written or spent
    if settings.run.backend == "ray":
        require_ray()
    _check_output_paths(opts)
    settings = simulated_poll(settings, opts.simulate)
    processes = worker_context()  # already running when started by the `anvil` entry point
    if settings.run.backend != "ray" and opts.mode != "batches":
        begin_governor(governor_context())  # its start-up overlaps loading the batch
    try:
        return _execute(settings, opts, endpoints, processes, signals, monitor, fd_note)
    finally:
        early.drop()  # not taken: nothing to run, or refused


def _execute(
    settings: Settings,
    opts: RunOptions,
    endpoints: tuple[Endpoint, ...],
    processes: BaseContext,
    signals: SignalState | None,
    monitor: Monitor | None,
    fd_note: str | None,
) -> RunReport:
    sha = batch_sha(opts.batch)  # hashed once: to skip re-validating a resume, and to check it
    jobs = validated_jobs(settings, opts, sha)
    sha = sha or file_sha256(opts.batch)
    with ExitStack() as stack:
        # a refused address or token, or a port in use, is bad input: before anything is written
        listening = listen_for_api(settings, opts.serve, stack) if opts.serve else None
        journal = stack.enter_context(Journal.open(settings.state_dir))
        if signals is None:
            signals = stack.enter_context(SignalState())
        run_id, resumed, notes = open_run(journal, jobs, sha, opts)
        notes += count_unjournaled(journal, run_id, settings.state_dir)
        if opts.command:
            journal.add_event(run_id, "run_started", {"argv": opts.command, "cwd": os.getcwd()})
        counts = journal.counts(run_id)
        metrics = RunMetrics(
            total=sum(counts.values()),
            started_at=time.monotonic(),
            already_done=counts[SUCCEEDED] + counts[FAILED],
            already_failed=counts[FAILED],
            cost_before_usd=journal.totals(run_id)["cost_usd"],
        )
        if metrics.already_done:  # the checks its earlier sessions found, for the live figures
            metrics.checks = tally_of_run(journal, run_id)
        control = start_api(settings, run_id, listening, stack) if listening else None
        ticker = Ticker(journal, run_id, monitor or _silent_monitor(settings, opts))
        run = RunContext(
            settings, opts, journal, run_id, endpoints, processes, signals, metrics, ticker, control
        )
        if settings.run.tool_sandbox == "none":  # said on the dashboard now and in the summary's notes
            ticker.monitor.note(UNSANDBOXED_NOTE)
            notes.append(UNSANDBOXED_NOTE)
        end = RunEnd()
        if counts[PENDING] or control is not None:
            if opts.simulate:
                run = replace(run, endpoints=simulated_endpoints(endpoints, start_simulator(settings, stack)))
            end = conduct(run)
        if fd_note:
            notes.append(fd_note)
        if ticker.capped_note:
            notes.append(ticker.capped_note + " (raise scaling.max_agents or --agents)")
        return finish(run, end, resumed, notes)


def _check_output_paths(opts: RunOptions) -> None:
    """The files the run will write (`-o`, `--junit`): writable, before anything is spent."""
    for path, flag in ((opts.output, "-o"), (opts.junit, "--junit")):
        if path is not None:
            check_output_path(path, flag)


def _silent_monitor(settings: Settings, opts: RunOptions) -> Monitor:
    return RunMonitor(settings, NoScreen(), batch_path=str(opts.batch.resolve()))
