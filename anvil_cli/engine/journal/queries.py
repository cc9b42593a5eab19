"""Reads of a run's jobs: the pending ones in dispatch order (what a run, fresh or resumed,
feeds its ready queue from), counts by state, totals, and the stored results."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from anvil_cli.engine.events import ReadyRow
from anvil_cli.engine.journal.connection import Connection
from anvil_cli.engine.journal.rows import FAILED, PENDING, SUCCEEDED, JobState, job_row


class JobQueries(Connection):
    """Methods of `Journal` that read its jobs."""

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

    def models(self, run_id: str) -> set[str]:
        """The models the run's jobs ask for (`auto` as written)."""
        rows = self.db.execute("SELECT DISTINCT model FROM jobs WHERE run_id = ?", (run_id,))
        return {m for (m,) in rows if m}

    def counts(self, run_id: str) -> dict[str, int]:
        """How many of the run's jobs are in each state (every state named, plain strings)."""
        counts: dict[str, int] = {state.value: 0 for state in JobState}
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
        count `attempts.tool_errors_of` gives job by job)."""
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
            f"SELECT {self.job_cols} FROM jobs WHERE run_id = ? AND id = ?", (run_id, job_id)
        ).fetchone()
        return job_row(row) if row else None

    def iter_results(self, run_id: str) -> Iterator[dict[str, Any]]:
        """Every job of a run in batch order, as stored."""
        cur = self.db.execute(f"SELECT {self.job_cols} FROM jobs WHERE run_id = ? ORDER BY seq", (run_id,))
        for row in cur:
            yield job_row(row)

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
