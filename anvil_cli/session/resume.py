"""Open the run in the journal, or resume this batch's unfinished one: the batch file's digest
decides whether it may be resumed (and whether it must be validated again), the run's owner
whether another process has it, and what an earlier journal failure left unjournaled is counted."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from anvil_cli.config.settings import Settings
from anvil_cli.engine.journal import spend_carry
from anvil_cli.engine.journal.store import RUN_RUNNING, Journal, RunRow
from anvil_cli.engine.process.lifeline import owner_alive
from anvil_cli.engine.worker.tools.toolbox import resolve_job_commands
from anvil_cli.errors import UsageError
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.loader import load_batch
from anvil_cli.session.context import RunOptions


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def batch_sha(batch: Path) -> str | None:
    """The batch file's digest, None if it cannot be read (the loader says what is wrong)."""
    try:
        return file_sha256(batch)
    except OSError:
        return None


def validated_jobs(settings: Settings, opts: RunOptions, sha: str | None) -> Iterator[Job]:
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


def open_run(
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


def count_unjournaled(journal: Journal, run_id: str, state_dir: Path) -> list[str]:
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
