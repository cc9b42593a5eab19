"""The journal's time series: one `anvil_cli.snapshot.series.Sample` a second per run, written with the
snapshot, read by `GET /series` and `anvil report`."""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any, cast

from anvil_cli.snapshot.series import Sample


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

    def thinned_samples(
        self, run_id: str, max_points: int, since: float | None = None
    ) -> tuple[list[Sample], int]:
        """At most `max_points` of the samples after `since` (as `series.downsample` keeps them:
        evenly spaced, the first and last always), and how many there were. Thinned in SQLite,
        so a long run's 36,000 samples an hour ten are not all decoded to keep 1,500."""
        where, args = (
            ("run_id = ?", [run_id]) if since is None else ("run_id = ? AND at > ?", [run_id, since])
        )
        try:
            (count,) = self.db.execute(f"SELECT COUNT(*) FROM samples WHERE {where}", args).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return [], 0
            raise
        if count <= max_points or max_points < 2:
            return self.samples(run_id, since)[-max_points:] if max_points > 0 else [], count
        stride = math.ceil((count - 1) / (max_points - 1))
        rows = self.db.execute(
            "SELECT data_json FROM (SELECT data_json, at, ROW_NUMBER() OVER (ORDER BY at) AS rn"
            f" FROM samples WHERE {where}) WHERE (rn - 1) % ? = 0 OR rn = ? ORDER BY at",
            [*args, stride, count],
        ).fetchall()
        return [cast(Sample, json.loads(row[0])) for row in rows], count
