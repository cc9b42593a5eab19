"""The journal's time series: one `anvil_cli.series.Sample` a second per run, written with the
snapshot, read by `GET /series` and `anvil report`."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, cast

from anvil_cli.series import Sample


class SamplesTable:
    """Methods of `Journal` for the run's samples (`self.db` is the journal's connection)."""

    db: sqlite3.Connection

    def add_sample(self, run_id: str, sample: Sample) -> None:
        self.db.execute(
            "INSERT INTO samples (run_id, at, data_json) VALUES (?, ?, ?)",
            (run_id, sample["t"], json.dumps(sample)),
        )

    def samples(self, run_id: str, since: float | None = None) -> list[Sample]:
        """The run's samples taken after `since` (Unix seconds; all when None), oldest first. A
        journal written before samples were kept has none (opened read-only, it lacks the table)."""
        sql = "SELECT data_json FROM samples WHERE run_id = ?"
        args: tuple[Any, ...] = (run_id,)
        if since is not None:
            sql += " AND at > ?"
            args += (since,)
        try:
            rows = self.db.execute(sql + " ORDER BY at", args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        return [cast(Sample, json.loads(row[0])) for row in rows]
