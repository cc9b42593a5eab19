"""The journal: SQLite (WAL) in the state dir, the source of truth for runs and jobs.

A job exists once its row is committed; a result counts once its row is committed.
Everything else (ready queue, dashboard, output file) is derived from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from anvil_cli.engine.events import ReadyRow
from anvil_cli.engine.journal.batches import BatchesTable
from anvil_cli.engine.journal.damage import damage_message, is_damage
from anvil_cli.engine.journal.kind import RUN_KIND, add_run_kind, like_prefix
from anvil_cli.engine.journal.owner import OwnerColumn
from anvil_cli.engine.journal.rows import (
    BATCH_ABANDONED,
    BATCH_ENDED,
    BATCH_INTENT,
    BATCH_SUBMITTED,
    FAILED,
    JOB_COLS,
    JOB_STATES,
    JOURNAL_NAME,
    PENDING,
    RUN_FINISHED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RUN_STOPPED,
    RUNNING,
    SCHEMA,
    SUCCEEDED,
    BatchRow,
    JobResult,
    RunRow,
    job_row,
)
from anvil_cli.engine.journal.samples import SamplesTable
from anvil_cli.errors import UsageError
from anvil_cli.jobs.job import Job
from anvil_cli.securefile import private_sqlite, refuse_links

__all__ = [  # the journal's vocabulary, defined in records.py, used through this module
    "BATCH_ABANDONED",
    "BATCH_ENDED",
    "BATCH_INTENT",
    "BATCH_SUBMITTED",
    "FAILED",
    "JOB_STATES",
    "PENDING",
    "RUNNING",
    "RUN_FINISHED",
    "RUN_INTERRUPTED",
    "RUN_RUNNING",
    "RUN_STOPPED",
    "SUCCEEDED",
    "BatchRow",
    "JobResult",
    "Journal",
    "RunRow",
    "journal_path",
]


def journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL_NAME


class Journal(BatchesTable, SamplesTable, OwnerColumn):
    """One connection to the journal; use from a single thread."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if create:
            private_sqlite(path)
        elif not path.exists():
            raise FileNotFoundError(path)
        self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable against process crashes
            self.db.execute("PRAGMA busy_timeout=30000")
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:  # not SQLite at all, or damaged
            self.db.close()
            raise UsageError(
                f"{path} is not a readable Anvil journal ({exc}); move it away or use another --state-dir"
            ) from exc
        if tables and "runs" not in tables:
            self.db.close()
            raise UsageError(
                f"{path} is another program's database, not an Anvil journal; use another --state-dir"
            )
        if create:
            self.db.executescript(SCHEMA)
            self._add_owner_start()
        self._runs_have_kind = (create or "runs" in tables) and add_run_kind(self.db)

    @classmethod
    def open(cls, state_dir: Path) -> Journal:
        return cls(journal_path(state_dir))

    @classmethod
    def open_existing(cls, state_dir: Path) -> Journal | None:
        """The journal if one has been written, else None (also in the instant between a run
        creating the file and writing its schema)."""
        path = journal_path(state_dir)
        refuse_links(path)  # a dangling link is not "no journal yet": say what is there
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

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        """Closes the journal; a read that failed on a damaged row becomes a UsageError (exit 2)
        naming the rows (`journal_damage`), never a traceback."""
        try:
            if exc is not None and is_damage(exc):
                raise UsageError(damage_message(self.path, self.db, exc)) from exc
        finally:
            self.close()

    # -- transactions -------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: committed when the block ends, rolled back if it raises (the
        block's error is the one that propagates). Inside another transaction it joins it."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # keep the block's error, not this one
                    self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- runs ---------------------------------------------------------------------------------

    def create_run(
        self,
        batch_path: str,
        batch_sha: str,
        jobs: Iterable[Job],
        *,
        mode: str = "messages",
        kind: str = RUN_KIND,
    ) -> str:
        """Insert a run and all its jobs in one transaction: all or nothing. `kind`: "run", or
        "sample" for `anvil plan --sample` (never "the latest run")."""
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        with self.transaction():
            self._refuse_if_running(batch_path)
            self.db.execute(
                "INSERT INTO runs (id, batch_path, batch_sha, created_at, updated_at, state, pid, mode)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, batch_path, batch_sha, now, now, RUN_RUNNING, os.getpid(), mode),
            )
            total = self._insert_jobs(run_id, jobs)
            self.db.execute("UPDATE runs SET total = ? WHERE id = ?", (total, run_id))
            if self._runs_have_kind:
                self.db.execute("UPDATE runs SET kind = ? WHERE id = ?", (kind, run_id))
            self._stamp_owner(run_id)
        return run_id

    def _refuse_if_running(self, batch_path: str) -> None:
        """Inside the write transaction: another live process running this batch wins."""
        owner = self._live_owner(batch_path, RUN_RUNNING)
        if owner is not None:
            raise UsageError(f"run {owner[0]} of this batch is in progress in process {owner[1]}")

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
        with self.transaction():
            added = self._insert_jobs(run_id, jobs)
            self.db.execute("UPDATE runs SET total = total + ? WHERE id = ?", (added, run_id))
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
            f"SELECT {self._RUN_COLS} FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at DESC",
            (like_prefix(prefix),),
        ).fetchall()
        if len(rows) == 1 or (rows and rows[0][0] == prefix):
            return self._run_from_row(rows[0])
        return None

    def run_ids_matching(self, prefix: str, limit: int = 10) -> list[str]:
        """Ids of the runs starting with `prefix`, newest first (to name the candidates of an
        ambiguous prefix)."""
        rows = self.db.execute(
            "SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at DESC LIMIT ?",
            (like_prefix(prefix), limit),
        )
        return [r[0] for r in rows]

    def latest_run(self, batch_path: str | None = None) -> RunRow | None:
        """The newest run of `batch_path`, or the newest ordinary run of any batch (not a plan's
        sample: `anvil status`, `export` and `report` default to it)."""
        if batch_path is None:
            only_runs = " WHERE kind = 'run'" if self._runs_have_kind else ""
            row = self.db.execute(
                f"SELECT {self._RUN_COLS} FROM runs{only_runs} ORDER BY created_at DESC LIMIT 1"
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

    def claim_run(self, run_id: str, *, previous_pid: int | None) -> bool:
        """Make this process the run's owner, if nobody else took it since we read it (a
        compare-and-swap on the pid: two `anvil run` started at once cannot both resume it)."""
        with self.transaction():
            cur = self.db.execute(
                "UPDATE runs SET state = ?, pid = ?, updated_at = ?, ended_at = NULL, stop_reason = NULL"
                " WHERE id = ? AND pid IS ?",
                (RUN_RUNNING, os.getpid(), time.time(), run_id, previous_pid),
            )
            if cur.rowcount == 1:
                self._stamp_owner(run_id)  # and when this process started: its pid alone may be reused
        return cur.rowcount == 1

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

    def pending_after(self, run_id: str, after: tuple[int, int] | None, limit: int) -> list[ReadyRow]:
        """Pending jobs in dispatch order (priority, seq) strictly after `after`."""
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
        return [ReadyRow(*r) for r in rows]

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

    def record_result(self, run_id: str, r: JobResult, *, cost_journaled: bool = False) -> None:
        """A job's outcome, once (a job already finished is left alone). `cost_journaled`: its
        calls' costs were added one by one as they were settled (`add_cost`), so not again."""
        self.db.execute(
            "UPDATE jobs SET state = ?, model = ?, attempts = attempts + ?, output = ?, stop_reason = ?,"
            " usage_json = ?, cost_usd = cost_usd + ?, error_json = ?, attempts_json = ?, latency_s = ?,"
            " finished_at = ? WHERE run_id = ? AND seq = ? AND state IN (?, ?)",  # never twice
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
                run_id,
                r.seq,
                PENDING,
                RUNNING,
            ),
        )

    def add_cost(self, run_id: str, seq: int, cost_usd: float) -> None:
        """Money spent on one of a job's calls, committed as the call is settled."""
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
        """The run's spend (its jobs' calls, and what a journal failure left unjournaled: see
        engine/journal/spend_carry.py) and API calls."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(attempts), 0) FROM jobs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        (lost,) = self.db.execute(
            "SELECT COALESCE(SUM(json_extract(data_json, '$.usd')), 0) FROM events"
            " WHERE run_id = ? AND kind = 'unjournaled_spend'",
            (run_id,),
        ).fetchone()
        return {"cost_usd": float(row[0]) + float(lost), "attempts": float(row[1])}

    def tool_errors(self, run_id: str) -> int:
        """Failed tool calls of the run's finished jobs, as their attempt logs list them (the
        count `records.tool_errors_of` gives job by job)."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM jobs, json_each(jobs.attempts_json) AS a,"
            " json_each(a.value, '$.tools') AS t"
            " WHERE jobs.run_id = ? AND jobs.attempts_json LIKE '%\"tools\"%'"
            " AND json_type(a.value, '$.tools') = 'array' AND json_extract(t.value, '$.error') IS NOT NULL",
            (run_id,),
        ).fetchone()
        return int(row[0])

    def job_by_id(self, run_id: str, job_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            f"SELECT {JOB_COLS} FROM jobs WHERE run_id = ? AND id = ?", (run_id, job_id)
        ).fetchone()
        return job_row(row) if row else None

    def iter_results(self, run_id: str) -> Iterator[dict[str, Any]]:
        """Every job of a run in batch order, as stored."""
        cur = self.db.execute(f"SELECT {JOB_COLS} FROM jobs WHERE run_id = ? ORDER BY seq", (run_id,))
        for row in cur:
            yield job_row(row)

    def iter_finished(self, run_id: str) -> Iterator[dict[str, Any]]:
        cur = self.db.execute(
            f"SELECT {JOB_COLS} FROM jobs WHERE run_id = ? AND state IN (?, ?) ORDER BY finished_at",
            (run_id, SUCCEEDED, FAILED),
        )
        for row in cur:
            yield job_row(row)

    def return_to_pending(self, run_id: str, seqs: list[int], *, attempts: int = 0) -> None:
        """Unfinished jobs (pending or running) go back to pending, `attempts` more counted."""
        self.db.executemany(
            "UPDATE jobs SET state = ?, attempts = attempts + ? WHERE run_id = ? AND seq = ?"
            " AND state IN (?, ?)",
            [(PENDING, attempts, run_id, s, PENDING, RUNNING) for s in seqs],
        )

    def paid_job_costs(self, run_id: str) -> list[float]:
        """What each finished job that made API calls cost (not the cache's answers): the
        per-job costs a forecast of the rest is made from."""
        rows = self.db.execute(
            "SELECT cost_usd FROM jobs WHERE run_id = ? AND state IN (?, ?) AND attempts > 0",
            (run_id, SUCCEEDED, FAILED),
        )
        return [float(r[0]) for r in rows]

    def cache_hits(self, run_id: str) -> int:
        """Jobs of the run answered by the result cache (no call, no cost)."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM jobs WHERE run_id = ? AND state = ? AND attempts_json LIKE ?",
            (run_id, SUCCEEDED, '%"cache_hit": true%'),
        ).fetchone()
        return int(row[0])

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
