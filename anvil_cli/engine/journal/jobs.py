"""The journal's jobs and their state transitions (`rows.JobState`): inserted pending, marked
running when dispatched, finished once as succeeded or failed, and back to pending (attempts
counted) when given up unfinished or when a resume re-queues them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from anvil_cli.engine.journal.connection import Connection
from anvil_cli.engine.journal.endpoints import add_endpoint_cost, add_endpoint_errors
from anvil_cli.engine.journal.rows import FAILED, PENDING, RUNNING, SUCCEEDED, JobResult
from anvil_cli.jobs.job import Job
from anvil_cli.policy.checks.record import CheckRecord

_INSERT_CHUNK = 2000


def insert_jobs(db: sqlite3.Connection, run_id: str, jobs: Iterable[Job]) -> int:
    """Insert `jobs` into the run as pending (inside the caller's transaction); how many."""
    total = 0
    chunk: list[tuple[Any, ...]] = []
    sql = "INSERT INTO jobs (run_id, seq, id, priority, state, job_json) VALUES (?, ?, ?, ?, ?, ?)"
    for job in jobs:
        chunk.append((run_id, job.seq, job.id, int(job.priority), PENDING, json.dumps(job.to_record())))
        total += 1
        if len(chunk) >= _INSERT_CHUNK:
            db.executemany(sql, chunk)
            chunk.clear()
    if chunk:
        db.executemany(sql, chunk)
    return total


class JobsTable(Connection):
    """Methods of `Journal` that add jobs and move them between states."""

    def add_jobs(self, run_id: str, jobs: Iterable[Job]) -> int:
        """Append jobs to an existing run (durable when this returns)."""
        with self.transaction():
            added = insert_jobs(self.db, run_id, jobs)
            self.db.execute("UPDATE runs SET total = total + ? WHERE id = ?", (added, run_id))
        return added

    def next_seq(self, run_id: str) -> int:
        row = self.db.execute(
            "SELECT COALESCE(MAX(seq), -1) + 1 FROM jobs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return int(row[0])

    def mark_dispatched(self, run_id: str, seqs: list[int], started_at: float) -> None:
        """pending -> running: the jobs were handed to workers (a dispatch counted; the first
        start time kept)."""
        self.db.executemany(
            "UPDATE jobs SET state = ?, dispatches = dispatches + 1, started_at = COALESCE(started_at, ?)"
            " WHERE run_id = ? AND seq = ?",
            [(RUNNING, started_at, run_id, s) for s in seqs],
        )

    def return_to_pending(self, run_id: str, seqs: list[int], *, attempts: int = 0) -> None:
        """Unfinished jobs (pending or running) go back to pending, `attempts` more counted; a
        finished one is left alone."""
        self.db.executemany(
            "UPDATE jobs SET state = ?, attempts = attempts + ? WHERE run_id = ? AND seq = ?"
            " AND state IN (?, ?)",
            [(PENDING, attempts, run_id, s, PENDING, RUNNING) for s in seqs],
        )

    def record_result(self, run_id: str, r: JobResult, *, cost_journaled: bool = False) -> None:
        """A job's outcome, once (a job already finished is left alone). `cost_journaled`: its
        calls' costs were added one by one as they were settled (`add_cost`), so not again."""
        done = self.db.execute(
            "UPDATE jobs SET state = ?, model = ?, attempts = attempts + ?, output = ?, stop_reason = ?,"
            " usage_json = ?, cost_usd = cost_usd + ?, error_json = ?, attempts_json = ?, latency_s = ?,"
            " finished_at = ?, checks_json = ? WHERE run_id = ? AND seq = ? AND state IN (?, ?)",  # once
            (
                SUCCEEDED if r.succeeded else FAILED,
                r.model,
                r.attempts,
                r.output,
                r.stop_reason,
                json.dumps(r.usage.to_json()) if r.usage is not None else None,
                0.0 if cost_journaled else r.cost_usd,
                json.dumps(r.error.to_json()) if r.error is not None else None,
                json.dumps([a.to_json() for a in r.attempt_log]) if r.attempt_log is not None else None,
                r.latency_s,
                r.finished_at,
                json.dumps(r.checks.to_json()) if r.checks is not None else None,
                run_id,
                r.seq,
                PENDING,
                RUNNING,
            ),
        )
        if done.rowcount != 1:
            return
        if not cost_journaled and r.endpoint:  # paid on a named endpoint, not call by call
            add_endpoint_cost(self.db, run_id, r.seq, r.endpoint, r.cost_usd)
        if r.attempt_log:  # its failed calls, by the named endpoint they went to
            add_endpoint_errors(self.db, run_id, r.seq, r.attempt_log)

    def update_checks(self, run_id: str, seq: int, record: CheckRecord | None) -> bool:
        """A finished job's checks evaluated again (`anvil check`): its CheckRecord replaced (None:
        it has no checks any more). Its state, output and cost are left as they are. False when
        the job is not finished (nothing written)."""
        done = self.db.execute(
            "UPDATE jobs SET checks_json = ? WHERE run_id = ? AND seq = ? AND state IN (?, ?)",
            (
                json.dumps(record.to_json()) if record is not None else None,
                run_id,
                seq,
                SUCCEEDED,
                FAILED,
            ),
        )
        return done.rowcount == 1

    def add_cost(self, run_id: str, seq: int, cost_usd: float, endpoint: str = "") -> None:
        """Money spent on one of a job's calls, committed as the call is settled; on a named
        `endpoint` also counted as its spend (journal/endpoints.py)."""
        self.db.execute(
            "UPDATE jobs SET cost_usd = cost_usd + ? WHERE run_id = ? AND seq = ?", (cost_usd, run_id, seq)
        )
        if endpoint:
            add_endpoint_cost(self.db, run_id, seq, endpoint, cost_usd)

    def requeue_running(self, run_id: str) -> int:
        """On resume: jobs left `running` by a process that died go back to pending (their
        dispatch was counted). How many."""
        cur = self.db.execute(
            "UPDATE jobs SET state = ? WHERE run_id = ? AND state = ?", (PENDING, run_id, RUNNING)
        )
        return cur.rowcount

    def requeue_failed(self, run_id: str) -> int:
        """On resume with --retry-failed: failed jobs go back to pending, afresh (error, attempts
        and dispatches cleared; their cost stays). How many."""
        cur = self.db.execute(
            "UPDATE jobs SET state = ?, error_json = NULL, attempts = 0, dispatches = 0"
            " WHERE run_id = ? AND state = ?",
            (PENDING, run_id, FAILED),
        )
        return cur.rowcount
