"""The journal's Message Batches table (`anvil run --mode batches`), and the follow-up of a
checked job between two of its batches.

A job with an output schema or checks may need more than one request in batches mode: its
answer re-asked (the answer did not match the schema) or graded by judges. What the next
request needs is kept in the job's own row, `jobs.batch_followup_json` (added here, on first
use, to journals without it), as `modes/batches/followup.FollowUp.to_json()`: the turns to
append to the job's conversation (each invalid answer and the re-ask after it), the re-asks
made and what every call so far cost (already added to `jobs.cost_usd` as each was ingested),
the attempt log, and once the answer is valid, the answer and the check results so far. One
JSON field on the job's row, not a table: a follow-up belongs to exactly one job, is written in
the same transaction as the batch result that caused it (with the batch marked ended and the
job put back to pending), so a crash before the follow-up batch is created loses nothing and
pays nothing twice (the next run submits the follow-up from this row); it is cleared when the
job's result is recorded.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from anvil_cli.engine.journal.kind import has_column
from anvil_cli.engine.journal.rows import BATCH_INTENT, PENDING, RUNNING, BatchRow, job_row

FOLLOWUP_COL = "batch_followup_json"


class BatchesTable:
    """Methods of `Journal` for the batches it submitted (`self.db` is the journal's connection)."""

    db: sqlite3.Connection
    job_cols: str

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
                f"SELECT {self.job_cols} FROM jobs WHERE run_id = ? AND seq IN ({marks}) ORDER BY seq",
                (run_id, *part),
            ).fetchall()
            out.extend(job_row(r) for r in rows)
        return out

    # -- the follow-up of a checked job (see the module docstring) --------------------------------

    def _followup_column(self) -> bool:
        """Give the jobs table its follow-up column if it lacks one; False when it cannot be
        added (a read-only journal)."""
        if getattr(self, "_has_followup", False):
            return True
        if not has_column(self.db, "jobs", FOLLOWUP_COL):
            try:
                if self.db.in_transaction:  # joins the caller's transaction
                    self.db.execute(f"ALTER TABLE jobs ADD COLUMN {FOLLOWUP_COL} TEXT")
                else:
                    self.db.execute("BEGIN IMMEDIATE")
                    try:
                        if not has_column(self.db, "jobs", FOLLOWUP_COL):  # another process's meanwhile
                            self.db.execute(f"ALTER TABLE jobs ADD COLUMN {FOLLOWUP_COL} TEXT")
                        self.db.execute("COMMIT")
                    except BaseException:
                        self.db.execute("ROLLBACK")
                        raise
            except sqlite3.OperationalError:
                return False
        self._has_followup = True
        return True

    def followups(self, run_id: str, seqs: list[int]) -> dict[int, dict[str, Any]]:
        """The follow-ups of those of these jobs that have one, by seq."""
        if not seqs or not self._followup_column():
            return {}
        out: dict[int, dict[str, Any]] = {}
        for i in range(0, len(seqs), 500):
            part = seqs[i : i + 500]
            marks = ", ".join("?" for _ in part)
            rows = self.db.execute(
                f"SELECT seq, {FOLLOWUP_COL} FROM jobs WHERE run_id = ? AND seq IN ({marks})"
                f" AND {FOLLOWUP_COL} IS NOT NULL",
                (run_id, *part),
            )
            out.update((int(seq), json.loads(data)) for seq, data in rows)
        return out

    def set_followup(self, run_id: str, seq: int, followup: dict[str, Any] | None) -> None:
        """An unfinished job's follow-up, and the job back to pending for the next batch to carry
        its next request; None clears it (its result is being recorded)."""
        if not self._followup_column():
            raise sqlite3.OperationalError(f"the journal's jobs table has no {FOLLOWUP_COL} column")
        if followup is None:
            sql = f"UPDATE jobs SET {FOLLOWUP_COL} = NULL WHERE run_id = ? AND seq = ?"
            self.db.execute(sql, (run_id, seq))
            return
        self.db.execute(
            f"UPDATE jobs SET {FOLLOWUP_COL} = ?, state = ? WHERE run_id = ? AND seq = ? AND state IN (?, ?)",
            (json.dumps(followup), PENDING, run_id, seq, PENDING, RUNNING),
        )
