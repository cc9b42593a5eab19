"""The journal's Message Batches table (`anvil run --mode batches`)."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from anvil_cli.engine.journal.rows import BATCH_INTENT, BatchRow, job_row


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
