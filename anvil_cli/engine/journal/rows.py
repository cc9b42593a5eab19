"""What the journal stores: its schema, the states of runs and jobs, and the rows it returns."""

from __future__ import annotations

import enum
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from anvil_cli.engine.attempts import tool_errors_of
from anvil_cli.engine.journal.kind import has_column
from anvil_cli.engine.outcomes import JobResult as JobResult  # the journal's vocabulary, defined neutrally

JOURNAL_NAME = "journal.sqlite"


class JobState(enum.StrEnum):
    """A job's state in the journal: pending -> running (dispatched) -> succeeded or failed. An
    unfinished job goes back to pending (its run stopped, its worker died, a resume found it
    running); a failed one too when a run is resumed with --retry-failed. The values are the
    strings stored."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RunState(enum.StrEnum):
    """A run's state in the journal (the values are the strings stored)."""

    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"  # budget, auth, spend cap: resumable
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM / crash: resumable


# the names the rest of Anvil uses
PENDING = JobState.PENDING
RUNNING = JobState.RUNNING
SUCCEEDED = JobState.SUCCEEDED
FAILED = JobState.FAILED
JOB_STATES = tuple(JobState)

RUN_RUNNING = RunState.RUNNING
RUN_FINISHED = RunState.FINISHED
RUN_STOPPED = RunState.STOPPED
RUN_INTERRUPTED = RunState.INTERRUPTED

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    batch_path TEXT NOT NULL,
    batch_sha TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ended_at REAL,
    state TEXT NOT NULL,
    pid INTEGER,
    total INTEGER NOT NULL DEFAULT 0,
    mode TEXT NOT NULL DEFAULT 'messages',
    stop_reason TEXT,
    summary_json TEXT,
    snapshot_json TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    job_json TEXT NOT NULL,
    model TEXT,
    dispatches INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    output TEXT,
    stop_reason TEXT,
    usage_json TEXT,
    cost_usd REAL NOT NULL DEFAULT 0,
    error_json TEXT,
    attempts_json TEXT,
    latency_s REAL,
    started_at REAL,
    finished_at REAL,
    checks_json TEXT,
    PRIMARY KEY (run_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_id ON jobs (run_id, id);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (run_id, state, priority, seq);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    data_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id, at);
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    batch_id TEXT,
    state TEXT NOT NULL,
    seqs_json TEXT NOT NULL,
    worst_usd REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (run_id, n)
);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL,
    at REAL NOT NULL,
    data_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_run ON samples (run_id, at);
CREATE TABLE IF NOT EXISTS endpoint_spend (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    cost_usd REAL NOT NULL DEFAULT 0,
    calls INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    rate_limited INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, endpoint, seq)
);
"""

# Message Batches rows (`anvil run --mode batches`): an "intent" is written before the create
# call, "submitted" once the server named the batch, "ended" once its results are in the jobs
# rows, "abandoned" when the create is known not to have happened.
BATCH_INTENT = "intent"
BATCH_SUBMITTED = "submitted"
BATCH_ENDED = "ended"
BATCH_ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class BatchRow:
    """A Message Batch of a run, as stored in the journal."""

    run_id: str
    n: int
    batch_id: str | None
    state: str
    seqs: list[int]
    worst_usd: float
    created_at: float


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run as stored in the journal."""

    id: str
    batch_path: str
    batch_sha: str
    created_at: float
    updated_at: float
    ended_at: float | None
    state: str
    pid: int | None
    total: int
    mode: str
    stop_reason: str | None
    summary: dict[str, Any] | None
    snapshot: dict[str, Any] | None


JOB_COLS = (
    "seq, id, state, model, attempts, dispatches, output, stop_reason, usage_json, cost_usd, error_json,"
    " attempts_json, latency_s, started_at, finished_at, job_json, checks_json"
)
# what a journal too old to have `jobs.checks_json`, and not writable to add it, is read with
JOB_COLS_WITHOUT_CHECKS = JOB_COLS.replace("checks_json", "NULL")


def add_checks_column(db: sqlite3.Connection) -> bool:
    """Give the jobs table its `checks_json` column (journals written before answers were
    checked lack it); False when it cannot be added (a read-only journal)."""
    if has_column(db, "jobs", "checks_json"):
        return True
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            if not has_column(db, "jobs", "checks_json"):  # another process may have added it meanwhile
                db.execute("ALTER TABLE jobs ADD COLUMN checks_json TEXT")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError:
        return False
    return True


def endpoint_of(attempt_log: Any) -> str | None:
    """The named endpoint of a job's last call (`JobResult.endpoint`: the one that answered it,
    or refused it last), from its attempt log; None on the run's only endpoint."""
    if not isinstance(attempt_log, list):
        return None
    for attempt in reversed(attempt_log):
        if isinstance(attempt, dict) and not attempt.get("cache_hit"):
            endpoint = attempt.get("endpoint")
            return endpoint if isinstance(endpoint, str) and endpoint else None
    return None


def job_row(row: tuple[Any, ...]) -> dict[str, Any]:
    attempt_log = json.loads(row[11]) if row[11] else None
    tool_errors, tool_error = tool_errors_of(attempt_log)
    return {
        "seq": row[0],
        "id": row[1],
        "state": row[2],
        "model": row[3],
        "attempts": row[4],
        "dispatches": row[5],
        "output": row[6],
        "stop_reason": row[7],
        "usage": json.loads(row[8]) if row[8] else None,
        "cost_usd": row[9],
        "error": json.loads(row[10]) if row[10] else None,
        "attempt_log": attempt_log,
        "tool_errors": tool_errors,  # derived from the attempt log (attempts.tool_errors_of)
        "tool_error": tool_error,
        "endpoint": endpoint_of(attempt_log),  # derived from the attempt log too
        "latency_s": row[12],
        "started_at": row[13],
        "finished_at": row[14],
        "job": json.loads(row[15]),
        "checks": json.loads(row[16]) if row[16] else None,  # CheckRecord.to_json(), when checked
    }
