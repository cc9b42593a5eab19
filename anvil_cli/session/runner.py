"""`anvil run` end to end: validate, open or resume the run in the journal, start the
governor and workers, conduct, then record the outcome and write the results."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anvil_cli.config.endpoint import Endpoint, resolve_endpoint
from anvil_cli.config.settings import Settings
from anvil_cli.config.vault import environ_with_secrets
from anvil_cli.engine.backends.local import LocalBackend
from anvil_cli.engine.conductor.core import JOURNAL_ERROR, Conductor
from anvil_cli.engine.governor_host.manager import GovernorKeeper
from anvil_cli.engine.journal import spend_carry
from anvil_cli.engine.journal.kind import RUN_KIND
from anvil_cli.engine.journal.store import (
    FAILED,
    PENDING,
    RUN_FINISHED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RUN_STOPPED,
    RUNNING,
    SUCCEEDED,
    Journal,
    RunRow,
    journal_path,
)
from anvil_cli.engine.output import unwritten_message, write_results
from anvil_cli.engine.process.fdlimit import agents_within_fd_limit, raise_nofile_limit
from anvil_cli.engine.process.forkserver import worker_context
from anvil_cli.engine.process.lifeline import owner_alive
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.engine.ticker import Monitor, Ticker
from anvil_cli.engine.worker.config import WorkerConfig
from anvil_cli.engine.worker.tools.sandbox import UNSANDBOXED_NOTE, sweep_after_run
from anvil_cli.engine.worker.tools.toolbox import resolve_job_commands
from anvil_cli.errors import UsageError
from anvil_cli.exitcodes import ExitCode
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.loader import load_batch
from anvil_cli.session.control import RunControl
from anvil_cli.session.preflight import check_output_path, check_state_dir
from anvil_cli.snapshot.metrics import RunMetrics

SIM_API_KEY = "sk-ant-simulated-local-key"
SIM_POLL_INTERVAL_S = 1.0  # `--mode batches --simulate`: the embedded simulator answers in ~1 s


@dataclass
class RunOptions:
    """What the user asked of `anvil run`."""

    batch: Path
    output: Path | None = None
    fresh: bool = False
    retry_failed: bool = False
    simulate: bool = False
    api_key: str | None = None
    mode: str = "messages"  # or "batches": the Message Batches API (engine/modes/batches/mode.py)
    serve: tuple[str, int] | None = None  # (host, port) of the HTTP control API
    command: list[str] | None = None  # the command line, recorded so `anvil status` can say how to resume
    kind: str = RUN_KIND  # or SAMPLE_KIND: `anvil plan --sample`'s run, never "the latest run"


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _open_run(
    journal: Journal, jobs: Iterator[Job], sha: str, opts: RunOptions
) -> tuple[str, bool, list[str]]:
    """Create the run, or pick up the unfinished one of this batch. Returns (id, resumed, notes)."""
    batch_path = str(opts.batch.resolve())
    run = None if opts.fresh else journal.latest_run(batch_path)
    if run is None:
        return journal.create_run(batch_path, sha, jobs, mode=opts.mode, kind=opts.kind), False, []
    _check_resumable(run, sha, journal.owner_start(run.id))
    if not journal.claim_run(run.id, previous_pid=run.pid):  # before touching any of its jobs
        raise UsageError(f"another anvil process has just taken run {run.id}; watch it with `anvil status`")
    notes: list[str] = []
    if opts.retry_failed:
        n = journal.requeue_failed(run.id)
        notes.append(f"re-queued {n} failed job(s)")
    requeued = journal.requeue_running(run.id)
    if requeued:
        notes.append(f"{requeued} job(s) that were in flight when the last process stopped will run again")
    return run.id, True, notes


def _validated_jobs(settings: Settings, opts: RunOptions, sha: str | None) -> Iterator[Job]:
    """The batch's jobs, validated as a whole before anything is written (bad input leaves no
    trace). A resume of the same, unchanged file (`sha`: its digest, None if unreadable) skips
    the pass: it was valid when its run began, and a 100,000-job YAML file takes seconds."""
    if not opts.fresh and sha is not None and _resumable_unchanged(settings, opts.batch, sha):
        return iter(())
    return resolve_job_commands(load_batch(opts.batch, extra_models=list(settings.prices)), Path.cwd())


def _resumable_unchanged(settings: Settings, batch: Path, sha: str) -> bool:
    journal = Journal.open_existing(settings.state_dir)
    if journal is None:
        return False
    with journal:
        run = journal.latest_run(str(batch.resolve()))
    return run is not None and run.batch_sha == sha


def _batch_sha(batch: Path) -> str | None:
    try:
        return file_sha256(batch)
    except OSError:  # the loader says what is wrong with the path
        return None


def _check_resumable(run: RunRow, sha: str, owner_start: str | None) -> None:
    if run.batch_sha != sha:
        raise UsageError(
            f"{run.batch_path} changed since run {run.id} started; "
            "run with --fresh to start a new run, or restore the file to resume"
        )
    if run.state == RUN_RUNNING and run.pid != os.getpid() and owner_alive(run.pid, owner_start):
        raise UsageError(
            f"run {run.id} of this batch is in progress in process {run.pid}; watch it with `anvil status`"
        )


def _start_simulator(settings: Settings, stack: ExitStack) -> str:
    from anvil_cli.sim import SimServer
    from anvil_cli.sim.embedded import embedded_config

    server = SimServer(embedded_config(settings)).start_process()
    stack.callback(server.stop)
    return server.base_url


@dataclass
class _Listening:
    """The API's address, token and bound socket, made sure of before any run is written."""

    host: str
    sock: socket.socket
    token: str
    generated: bool


def _listen_for_api(settings: Settings, serve: tuple[str, int], stack: ExitStack) -> _Listening:
    """A refusal here (a public address without a token, a port in use) writes nothing."""
    from anvil_cli.views.api.address import require_loopback
    from anvil_cli.views.api.auth import TOKEN_ENV, resolve_token
    from anvil_cli.views.api.server import listen

    host, port = serve
    environ = environ_with_secrets()
    if not environ.get(TOKEN_ENV, "").strip():
        require_loopback(host)  # a generated token is for loopback only: refused before any file
    sock = listen(host, port)  # a port in use is refused before the token file is written too
    stack.callback(sock.close)
    token, generated = resolve_token(settings.state_dir, host, environ)
    return _Listening(host, sock, token, generated)


def _start_api(settings: Settings, run_id: str, at: _Listening, stack: ExitStack) -> RunControl:
    """The HTTP control API of this run, in a thread of the conductor process."""
    from anvil_cli.views.api.server import ApiServer

    control = RunControl(
        journal_path(settings.state_dir),
        run_id,
        agent_min=settings.scaling.min_agents,
        agent_max=settings.scaling.agent_limit(),
        extra_models=list(settings.prices),
    )
    stack.callback(control.close)
    port = at.sock.getsockname()[1]
    server = ApiServer(control, at.host, port, at.token, allow_remote=not at.generated).start(at.sock)
    stack.callback(server.stop)
    for line in _api_lines(server.url, at, settings.state_dir / "api_token", sys.stderr.isatty()):
        print(line, file=sys.stderr, flush=True)  # the user's own screen: never the journal or a log
    return control


def _api_lines(url: str, at: _Listening, token_file: Path, tty: bool) -> list[str]:
    """Where the dashboard and the API are. The token rides in the address's fragment
    (`#token=`), which a browser never sends to the server. A generated token is shown this once
    (it is also in its 0600 file); the user's own ANVIL_API_TOKEN is echoed only to a terminal,
    never to a CI log or a file stderr was sent to."""
    api = f"control API at {url} (Authorization: Bearer <token>)"
    if at.generated:
        note = f"(the token is shown once; also in {token_file}, mode 0600)"
        return [f"dashboard at {url}/#token={at.token} {note}", api]
    if tty:
        return [f"dashboard at {url}/#token={at.token}", api]
    return [f"dashboard at {url}/ (it asks for the token: ANVIL_API_TOKEN)", api]


def _fit_agents_to_fd_limit(settings: Settings) -> tuple[Settings, str | None]:
    """Every agent holds a socket: raise the open-file limit to the hard limit, and if even that
    cannot carry the agents asked for, cap them (and say so) rather than fail calls."""
    soft = raise_nofile_limit()
    asked = settings.scaling.agent_limit()
    fits = agents_within_fd_limit(asked, soft)
    if fits >= asked:
        return settings, None
    floor = min(fits, settings.scaling.min_agents)
    scaling = settings.scaling.model_copy(
        update={"max_agents": fits, "max_concurrent_jobs": fits, "min_agents": floor}
    )
    note = (
        f"the open-file limit ({soft:,}) carries at most {fits:,} agents per process: agents capped at"
        f" {fits:,} instead of {asked:,} (raise it with `ulimit -n` to run more)"
    )
    return settings.model_copy(update={"scaling": scaling}), note


def _exit_code(end: RunEnd, counts: dict[str, int]) -> tuple[ExitCode, str]:
    unfinished = counts[PENDING] + counts[RUNNING]
    if unfinished and end.stop_reason is not None:
        return ExitCode.STOPPED, RUN_STOPPED
    if unfinished:
        return ExitCode.INTERRUPTED, RUN_INTERRUPTED
    if counts[FAILED]:
        return ExitCode.JOBS_FAILED, RUN_FINISHED
    return ExitCode.OK, RUN_FINISHED


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
    endpoint = _endpoint(settings, opts)  # once, here: every worker, local or remote, is handed it
    settings, fd_note = _fit_agents_to_fd_limit(settings)
    check_state_dir(settings.state_dir)  # before anything is written or spent
    if settings.run.backend == "ray":
        require_ray()
    if opts.output is not None:
        check_output_path(opts.output)
    settings = simulated_poll(settings, opts.simulate)
    ctx = worker_context()  # already running when started by the `anvil` entry point
    sha = _batch_sha(opts.batch)  # hashed once: to skip re-validating a resume, and to check it
    jobs = _validated_jobs(settings, opts, sha)
    sha = sha or file_sha256(opts.batch)
    with ExitStack() as stack:
        # a refused address or token, or a port in use, is bad input: before anything is written
        listening = _listen_for_api(settings, opts.serve, stack) if opts.serve else None
        journal = stack.enter_context(Journal.open(settings.state_dir))
        if signals is None:
            signals = stack.enter_context(SignalState())
        run_id, resumed, notes = _open_run(journal, jobs, sha, opts)
        notes += _count_unjournaled(journal, run_id, settings.state_dir)
        if opts.command:
            journal.add_event(run_id, "run_started", {"argv": opts.command, "cwd": os.getcwd()})
        counts = journal.counts(run_id)
        end = RunEnd()
        t0 = time.monotonic()
        metrics = RunMetrics(
            total=sum(counts.values()),
            started_at=t0,
            already_done=counts[SUCCEEDED] + counts[FAILED],
            already_failed=counts[FAILED],
            cost_before_usd=journal.totals(run_id)["cost_usd"],
        )
        control = _start_api(settings, run_id, listening, stack) if listening else None
        ticker = Ticker(journal, run_id, monitor or _silent_monitor(settings, opts))
        _say_if_unsandboxed(settings, ticker, notes)
        if counts[PENDING] or control is not None:
            if opts.simulate:
                endpoint = endpoint.at(_start_simulator(settings, stack), "the embedded simulator")
            if opts.mode == "batches" or journal.batches(run_id, ("intent", "submitted")):
                end = _batches(settings, journal, run_id, endpoint, metrics, signals, ticker, control)
            else:
                end = _conduct(settings, journal, run_id, endpoint, ctx, metrics, signals, ticker, control)
        if fd_note:
            notes.append(fd_note)
        if ticker.capped_note:
            notes.append(ticker.capped_note + " (raise scaling.max_agents or --agents)")
        if end.stop_reason == JOURNAL_ERROR:
            return _journal_failed(journal, run_id, end, metrics, notes)
        return _finish(settings, journal, run_id, opts, end, metrics, resumed, notes)


def _endpoint(settings: Settings, opts: RunOptions) -> Endpoint:
    """Where calls go and with what credential (anvil_cli/config/endpoint.py); --simulate needs no key."""
    if opts.simulate:
        return Endpoint("http://127.0.0.1", "the embedded simulator", api_key=SIM_API_KEY)
    hint = " (or run with --simulate to rehearse offline)"
    return resolve_endpoint(settings, environ_with_secrets(), api_key=opts.api_key, hint=hint)


def _silent_monitor(settings: Settings, opts: RunOptions) -> Monitor:
    from anvil_cli.views.dashboard import QuietReporter, RunMonitor

    return RunMonitor(settings, QuietReporter(), batch_path=str(opts.batch.resolve()))


def _say_if_unsandboxed(settings: Settings, ticker: Ticker, notes: list[str]) -> None:
    """`run.tool_sandbox: none`, said on the dashboard now and in the summary's notes."""
    if settings.run.tool_sandbox == "none":
        ticker.monitor.note(UNSANDBOXED_NOTE)
        notes.append(UNSANDBOXED_NOTE)


def _conduct(
    settings: Settings,
    journal: Journal,
    run_id: str,
    endpoint: Endpoint,
    ctx: Any,
    metrics: RunMetrics,
    signals: SignalState,
    ticker: Ticker,
    control: RunControl | None = None,
) -> RunEnd:
    if settings.run.backend == "ray":
        from anvil_cli.session.ray_run import conduct_on_ray

        return conduct_on_ray(settings, journal, run_id, endpoint, metrics, signals, ticker, control)
    keeper = GovernorKeeper(settings, ctx, journal.totals(run_id)["cost_usd"])
    journal.add_event(run_id, "governor_started", {"pid": keeper.pid})
    try:
        settings_json = settings.model_dump_json()
        agents = settings.scaling.agent_limit()  # each worker may hold every slot if others died

        def make_config(wid: int) -> WorkerConfig:
            return WorkerConfig(wid, settings_json, endpoint, agents, os.getpid(), run_id)

        backend = LocalBackend(ctx, make_config, keeper.client)
        conductor = Conductor(
            settings,
            journal,
            run_id,
            backend,
            keeper.client,
            signals,
            metrics,
            ticker,
            control,
            keeper,
            endpoint=endpoint,
        )
        return conductor.run()
    finally:
        keeper.shutdown()
        sweep_after_run(run_id)  # what workers that died left: job directories, pids cgroups


def require_ray() -> None:
    """`--backend ray` without the extra: a usage error before anything is written."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UsageError("--backend ray needs Ray on this machine: pip install 'anvil-cli[ray]'")


def _batches(
    settings: Settings,
    journal: Journal,
    run_id: str,
    endpoint: Endpoint,
    metrics: RunMetrics,
    signals: SignalState,
    ticker: Ticker,
    control: RunControl | None,
) -> RunEnd:
    """`--mode batches`: the Message Batches API instead of workers (engine/modes/batches/mode.py),
    through the same ticker (views, `anvil status`, GET /status) and control as the conductor."""
    import anthropic

    from anvil_cli.engine.modes.batches.mode import BatchesContext, run_batches

    client = anthropic.Anthropic(**endpoint.client_kwargs(), timeout=settings.provider.timeout_s)
    say = ticker.monitor.note
    with client:
        return run_batches(
            BatchesContext(settings, journal, run_id, client, metrics, signals, ticker, control, say)
        )


def _count_unjournaled(journal: Journal, run_id: str, state_dir: Path) -> list[str]:
    """Set aside the bytes a journal failure would need, and journal what an earlier failure of
    this run left unjournaled (engine/journal/spend_carry.py): it counts toward the run's spend from now
    on (committed first, then the file is blanked)."""
    spend_carry.set_aside(state_dir)
    usd = spend_carry.pending(state_dir, run_id)
    if usd <= 0:
        return []
    journal.add_event(run_id, spend_carry.EVENT, {"usd": usd})
    spend_carry.clear(state_dir)
    return [f"${usd:.4f} of calls the journal could not record when it failed counts toward this run's spend"]


def _journal_failed(
    journal: Journal, run_id: str, end: RunEnd, metrics: RunMetrics, notes: list[str]
) -> RunReport:
    """The journal refused a write: write nothing more (the run is left `running` in the journal,
    so `anvil status` shows it interrupted and the same command resumes it). The counts are the
    journal's (it still reads), so they match what a resume finds; the spend adds what could not
    be journaled."""
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


def _finish(
    settings: Settings,
    journal: Journal,
    run_id: str,
    opts: RunOptions,
    end: RunEnd,
    metrics: RunMetrics,
    resumed: bool,
    notes: list[str],
) -> RunReport:
    counts = journal.counts(run_id)
    code, state = _exit_code(end, counts)
    summary = run_summary(journal, run_id, metrics, counts)
    summary.update({"run_id": run_id, "state": state, "stop_reason": end.stop_reason})
    message = end.stop_message
    summary["tool_sandbox"] = settings.run.tool_sandbox  # bwrap, or none: tools ran UNSANDBOXED
    if opts.output is not None:
        try:
            write_results(journal, run_id, opts.output)
            summary["output"] = str(opts.output)
        except OSError as exc:  # the results are in the journal: say how to write them; exit 3
            unwritten = unwritten_message(exc, run_id, opts.output, settings.state_dir)
            code = code if code in (ExitCode.STOPPED, ExitCode.INTERRUPTED) else ExitCode.STOPPED
            summary["output_error"] = unwritten
            message = f"{message}; {unwritten}" if message else unwritten
    summary["exit_code"] = int(code)
    journal.set_run_state(run_id, state, stop_reason=end.stop_reason, summary=summary, ended=True)
    return RunReport(run_id, code, state, summary, message, resumed, notes)


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


def simulated_poll(settings: Settings, simulate: bool) -> Settings:
    """Against the embedded simulator (which ends a Message Batch in about a second), poll every
    `SIM_POLL_INTERVAL_S` rather than the real API's 30 s, unless the user set an interval."""
    if not simulate or "poll_interval_s" in settings.batches.model_fields_set:
        return settings
    batches = settings.batches.model_copy(update={"poll_interval_s": SIM_POLL_INTERVAL_S})
    return settings.model_copy(update={"batches": batches})
