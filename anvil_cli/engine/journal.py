"""The journal: SQLite (WAL) in the state dir, the source of truth for runs and jobs.

A job exists once its row is committed; a result counts once its row is committed.
Everything else (ready queue, dashboard, output file) is derived from it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anvil_cli.batch.job import Job
from anvil_cli.securefile import private_sqlite

JOURNAL_NAME = "journal.sqlite"

PENDING = "pending"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
JOB_STATES = (PENDING, RUNNING, SUCCEEDED, FAILED)

# run states
RUN_RUNNING = "running"
RUN_FINISHED = "finished"
RUN_STOPPED = "stopped"  # budget, auth, spend cap: resumable
RUN_INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM / crash: resumable

_SCHEMA = """
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


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a worker reports when it is done with a job."""

    seq: int
    succeeded: bool
    model: str
    attempts: int
    output: str | None = None
    stop_reason: str | None = None
    usage: dict[str, Any] | None = None
    cost_usd: float = 0.0
    error: dict[str, Any] | None = None
    attempt_log: list[dict[str, Any]] | None = None
    latency_s: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cache_key: str | None = None  # set on a fresh success the result cache should keep


def journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL_NAME


class Journal:
    """One connection to the journal; use from a single thread."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if create:
            private_sqlite(path)
        elif not path.exists():
            raise FileNotFoundError(path)
        self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable against process crashes
        self.db.execute("PRAGMA busy_timeout=30000")
        if create:
            self.db.executescript(_SCHEMA)

    @classmethod
    def open(cls, state_dir: Path) -> Journal:
        return cls(journal_path(state_dir))

    @classmethod
    def open_existing(cls, state_dir: Path) -> Journal | None:
        """The journal if one has been written, else None (also in the instant between a run
        creating the file and writing its schema)."""
        path = journal_path(state_dir)
        if not path.exists():
            return None
        journal = cls(path, create=False)
        if journal.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is None:
            journal.close()
            return None
        return journal

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------------

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        self.db.execute("ROLLBACK")

    # -- runs ---------------------------------------------------------------------------------

    def create_run(
        self, batch_path: str, batch_sha: str, jobs: Iterable[Job], *, mode: str = "messages"
    ) -> str:
        """Insert a run and all its jobs in one transaction: all or nothing."""
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        self.begin()
        try:
            self.db.execute(
                "INSERT INTO runs (id, batch_path, batch_sha, created_at, updated_at, state, pid, mode)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, batch_path, batch_sha, now, now, RUN_RUNNING, os.getpid(), mode),
            )
            total = self._insert_jobs(run_id, jobs)
            self.db.execute("UPDATE runs SET total = ? WHERE id = ?", (total, run_id))
            self.commit()
        except BaseException:
            self.rollback()
            raise
        return run_id

    def _insert_jobs(self, run_id: str, jobs: Iterable[Job]) -> int:
        total = 0
        chunk: list[tuple[Any, ...]] = []
        sql = "INSERT INTO jobs (run_id, seq, id, priority, state, job_json) VALUES (?, ?, ?, ?, ?, ?)"
        for job in jobs:
            chunk.append((run_id, job.seq, job.id, int(job.priority), PENDING, json.dumps(job.to_record())))
            total += 1
            if len(chunk) >= 2000:
                self.db.executemany(sql, chunk)
                chunk.clear()
        if chunk:
            self.db.executemany(sql, chunk)
        return total

    def add_jobs(self, run_id: str, jobs: Iterable[Job]) -> int:
        """Append jobs to an existing run (durable when this returns)."""
        self.begin()
        try:
            added = self._insert_jobs(run_id, jobs)
            self.db.execute("UPDATE runs SET total = total + ? WHERE id = ?", (added, run_id))
            self.commit()
        except BaseException:
            self.rollback()
            raise
        return added

    def next_seq(self, run_id: str) -> int:
        row = self.db.execute(
            "SELECT COALESCE(MAX(seq), -1) + 1 FROM jobs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return int(row[0])

    def _run_from_row(self, row: tuple[Any, ...]) -> RunRow:
        return RunRow(
            id=row[0],
            batch_path=row[1],
            batch_sha=row[2],
            created_at=row[3],
            updated_at=row[4],
            ended_at=row[5],
            state=row[6],
            pid=row[7],
            total=row[8],
            mode=row[9],
            stop_reason=row[10],
            summary=json.loads(row[11]) if row[11] else None,
            snapshot=json.loads(row[12]) if row[12] else None,
        )

    _RUN_COLS = (
        "id, batch_path, batch_sha, created_at, updated_at, ended_at, state, pid, total, mode,"
        " stop_reason, summary_json, snapshot_json"
    )

    def get_run(self, run_id: str) -> RunRow | None:
        row = self.db.execute(f"SELECT {self._RUN_COLS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return self._run_from_row(row) if row else None

    def find_run(self, prefix: str) -> RunRow | None:
        """A run by id or unique id prefix."""
        rows = self.db.execute(
            f"SELECT {self._RUN_COLS} FROM runs WHERE id LIKE ? ORDER BY created_at DESC", (prefix + "%",)
        ).fetchall()
        if len(rows) == 1 or (rows and rows[0][0] == prefix):
            return self._run_from_row(rows[0])
        return None

    def latest_run(self, batch_path: str | None = None) -> RunRow | None:
        if batch_path is None:
            row = self.db.execute(
                f"SELECT {self._RUN_COLS} FROM runs ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
        else:
            row = self.db.execute(
                f"SELECT {self._RUN_COLS} FROM runs WHERE batch_path = ? ORDER BY created_at DESC LIMIT 1",
                (batch_path,),
            ).fetchone()
        return self._run_from_row(row) if row else None

    def list_runs(self, limit: int = 20) -> list[RunRow]:
        rows = self.db.execute(
            f"SELECT {self._RUN_COLS} FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [self._run_from_row(r) for r in rows]

    def set_run_state(
        self,
        run_id: str,
        state: str,
        *,
        stop_reason: str | None = None,
        summary: dict[str, Any] | None = None,
        ended: bool = False,
    ) -> None:
        now = time.time()
        self.db.execute(
            "UPDATE runs SET state = ?, stop_reason = ?, updated_at = ?, ended_at = ?,"
            " summary_json = COALESCE(?, summary_json) WHERE id = ?",
            (
                state,
                stop_reason,
                now,
                now if ended else None,
                json.dumps(summary) if summary else None,
                run_id,
            ),
        )

    def claim_run(self, run_id: str) -> None:
        """Mark a run as running in this process (on start or resume)."""
        self.db.execute(
            "UPDATE runs SET state = ?, pid = ?, updated_at = ?, ended_at = NULL, stop_reason = NULL"
            " WHERE id = ?",
            (RUN_RUNNING, os.getpid(), time.time(), run_id),
        )

    def save_snapshot(self, run_id: str, snapshot: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE runs SET snapshot_json = ?, updated_at = ? WHERE id = ?",
            (json.dumps(snapshot), time.time(), run_id),
        )

    # -- jobs ---------------------------------------------------------------------------------

    def requeue_running(self, run_id: str) -> int:
        """Jobs left `running` by a process that died go back to pending (attempt counted)."""
        cur = self.db.execute(
            "UPDATE jobs SET state = ? WHERE run_id = ? AND state = ?", (PENDING, run_id, RUNNING)
        )
        return cur.rowcount

    def requeue_failed(self, run_id: str) -> int:
        cur = self.db.execute(
            "UPDATE jobs SET state = ?, error_json = NULL, attempts = 0, dispatches = 0"
            " WHERE run_id = ? AND state = ?",
            (PENDING, run_id, FAILED),
        )
        return cur.rowcount

    def pending_after(
        self, run_id: str, after: tuple[int, int] | None, limit: int
    ) -> list[tuple[int, int, dict[str, Any], int]]:
        """Pending jobs in dispatch order (priority, seq) strictly after `after`:
        (priority, seq, job record, dispatches)."""
        if after is None:
            rows = self.db.execute(
                "SELECT priority, seq, job_json, dispatches FROM jobs WHERE run_id = ? AND state = ?"
                " ORDER BY priority, seq LIMIT ?",
                (run_id, PENDING, limit),
            ).fetchall()
        else:
            rows = self.db.execute(
                "SELECT priority, seq, job_json, dispatches FROM jobs WHERE run_id = ? AND state = ?"
                " AND (priority > ? OR (priority = ? AND seq > ?)) ORDER BY priority, seq LIMIT ?",
                (run_id, PENDING, after[0], after[0], after[1], limit),
            ).fetchall()
        return [(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def mark_dispatched(self, run_id: str, seqs: list[int], started_at: float) -> None:
        self.db.executemany(
            "UPDATE jobs SET state = ?, dispatches = dispatches + 1, started_at = COALESCE(started_at, ?)"
            " WHERE run_id = ? AND seq = ?",
            [(RUNNING, started_at, run_id, s) for s in seqs],
        )

    def mark_pending(self, run_id: str, seqs: list[int], *, attempts: int = 0) -> None:
        self.db.executemany(
            "UPDATE jobs SET state = ?, attempts = attempts + ? WHERE run_id = ? AND seq = ? AND state = ?",
            [(PENDING, attempts, run_id, s, RUNNING) for s in seqs],
        )

    def record_result(self, run_id: str, r: JobResult) -> None:
        self.db.execute(
            "UPDATE jobs SET state = ?, model = ?, attempts = attempts + ?, output = ?, stop_reason = ?,"
            " usage_json = ?, cost_usd = cost_usd + ?, error_json = ?, attempts_json = ?, latency_s = ?,"
            " finished_at = ? WHERE run_id = ? AND seq = ?",
            (
                SUCCEEDED if r.succeeded else FAILED,
                r.model,
                r.attempts,
                r.output,
                r.stop_reason,
                json.dumps(r.usage) if r.usage is not None else None,
                r.cost_usd,
                json.dumps(r.error) if r.error is not None else None,
                json.dumps(r.attempt_log) if r.attempt_log is not None else None,
                r.latency_s,
                r.finished_at,
                run_id,
                r.seq,
            ),
        )

    def add_cost(self, run_id: str, seq: int, cost_usd: float) -> None:
        """Money spent on a job whose result was not kept (e.g. abandoned mid-call)."""
        self.db.execute(
            "UPDATE jobs SET cost_usd = cost_usd + ? WHERE run_id = ? AND seq = ?", (cost_usd, run_id, seq)
        )

    def counts(self, run_id: str) -> dict[str, int]:
        counts = dict.fromkeys(JOB_STATES, 0)
        for state, n in self.db.execute(
            "SELECT state, COUNT(*) FROM jobs WHERE run_id = ? GROUP BY state", (run_id,)
        ):
            counts[state] = n
        return counts

    def totals(self, run_id: str) -> dict[str, float]:
        row = self.db.execute(
            "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(attempts), 0) FROM jobs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        return {"cost_usd": float(row[0]), "attempts": float(row[1])}

    def job_by_id(self, run_id: str, job_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            f"SELECT {_JOB_COLS} FROM jobs WHERE run_id = ? AND id = ?", (run_id, job_id)
        ).fetchone()
        return _job_row(row) if row else None

    def iter_results(self, run_id: str) -> Iterator[dict[str, Any]]:
        """Every job of a run in batch order, as stored."""
        cur = self.db.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE run_id = ? ORDER BY seq", (run_id,))
        for row in cur:
            yield _job_row(row)

    def iter_finished(self, run_id: str) -> Iterator[dict[str, Any]]:
        cur = self.db.execute(
            f"SELECT {_JOB_COLS} FROM jobs WHERE run_id = ? AND state IN (?, ?) ORDER BY finished_at",
            (run_id, SUCCEEDED, FAILED),
        )
        for row in cur:
            yield _job_row(row)

    def return_to_pending(self, run_id: str, seqs: list[int], *, attempts: int = 0) -> None:
        """Unfinished jobs (pending or running) go back to pending, `attempts` more counted."""
        self.db.executemany(
            "UPDATE jobs SET state = ?, attempts = attempts + ? WHERE run_id = ? AND seq = ?"
            " AND state IN (?, ?)",
            [(PENDING, attempts, run_id, s, PENDING, RUNNING) for s in seqs],
        )

    def cache_hits(self, run_id: str) -> int:
        """Jobs of the run answered by the result cache (no call, no cost)."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM jobs WHERE run_id = ? AND state = ? AND attempts_json LIKE ?",
            (run_id, SUCCEEDED, '%"cache_hit": true%'),
        ).fetchone()
        return int(row[0])

    # -- message batches ------------------------------------------------------------------------

    def add_batch_intent(self, run_id: str, seqs: list[int], worst_usd: float) -> int:
        """Record that a batch of these jobs is about to be created; returns its number."""
        row = self.db.execute("SELECT COALESCE(MAX(n), -1) + 1 FROM batches WHERE run_id = ?", (run_id,))
        n = int(row.fetchone()[0])
        now = time.time()
        self.db.execute(
            "INSERT INTO batches (run_id, n, batch_id, state, seqs_json, worst_usd, created_at, updated_at)"
            " VALUES (?, ?, NULL, ?, ?, ?, ?, ?)",
            (run_id, n, BATCH_INTENT, json.dumps(seqs), worst_usd, now, now),
        )
        return n

    def set_batch(self, run_id: str, n: int, state: str, batch_id: str | None = None) -> None:
        self.db.execute(
            "UPDATE batches SET state = ?, batch_id = COALESCE(?, batch_id), updated_at = ?"
            " WHERE run_id = ? AND n = ?",
            (state, batch_id, time.time(), run_id, n),
        )

    def batches(self, run_id: str, states: tuple[str, ...] | None = None) -> list[BatchRow]:
        """The run's batches, oldest first, optionally only those in `states`."""
        sql = (
            "SELECT run_id, n, batch_id, state, seqs_json, worst_usd, created_at FROM batches"
            " WHERE run_id = ?"
        )
        args: tuple[Any, ...] = (run_id,)
        if states:
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            args += states
        rows = self.db.execute(sql + " ORDER BY n", args).fetchall()
        return [BatchRow(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows]

    def known_batch_ids(self) -> set[str]:
        """Every batch id recorded by any run (to tell ours from the server's other batches)."""
        return {r[0] for r in self.db.execute("SELECT batch_id FROM batches WHERE batch_id IS NOT NULL")}

    def job_rows(self, run_id: str, seqs: list[int]) -> list[dict[str, Any]]:
        """Some jobs of a run, by seq."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(seqs), 500):
            part = seqs[i : i + 500]
            marks = ", ".join("?" for _ in part)
            rows = self.db.execute(
                f"SELECT {_JOB_COLS} FROM jobs WHERE run_id = ? AND seq IN ({marks}) ORDER BY seq",
                (run_id, *part),
            ).fetchall()
            out.extend(_job_row(r) for r in rows)
        return out

    # -- events -------------------------------------------------------------------------------

    def add_event(self, run_id: str, kind: str, data: dict[str, Any], at: float | None = None) -> None:
        self.db.execute(
            "INSERT INTO events (run_id, at, kind, data_json) VALUES (?, ?, ?, ?)",
            (run_id, at if at is not None else time.time(), kind, json.dumps(data)),
        )

    def events(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT at, kind, data_json FROM events WHERE run_id = ?"
        args: tuple[Any, ...] = (run_id,)
        if kind is not None:
            sql += " AND kind = ?"
            args += (kind,)
        return [
            {"at": a, "kind": k, **json.loads(d)} for a, k, d in self.db.execute(sql + " ORDER BY at", args)
        ]


_JOB_COLS = (
    "seq, id, state, model, attempts, dispatches, output, stop_reason, usage_json, cost_usd, error_json,"
    " attempts_json, latency_s, started_at, finished_at, job_json"
)


def _job_row(row: tuple[Any, ...]) -> dict[str, Any]:
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
        "attempt_log": json.loads(row[11]) if row[11] else None,
        "latency_s": row[12],
        "started_at": row[13],
        "finished_at": row[14],
        "job": json.loads(row[15]),
    }
