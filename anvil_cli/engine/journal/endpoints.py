"""Spend by endpoint: which named endpoint (`endpoints:` in anvil.yaml) each paid call went to and
what it cost there, one row per (run, endpoint, job), added to as each call is settled
(`CallSettled.endpoint`), in the same transaction as the job's own cost (`jobs.add_cost`). So the
figures are exact, survive a crash and a resume, and a job that failed over to another endpoint
has a row on each.

Calls to the run's only endpoint (no `endpoints:` section, endpoint "") are not written here: a
run without named endpoints has no rows, and its views show no endpoint block. A journal older
than the table gains it when it is opened to write (the schema's CREATE IF NOT EXISTS); opened to
read, it has no table and no endpoint spend.

Failed calls cost nothing and are not settled; they are counted by endpoint from the attempt
logs of the finished jobs (`Attempt.endpoint`), as `tool_errors` are."""

from __future__ import annotations

import sqlite3
from typing import Any, TypedDict

from anvil_cli.engine.journal.connection import Connection


class EndpointSpend(TypedDict):
    """One named endpoint's share of a run, from the journal."""

    cost_usd: float  # what its calls cost (every settled call, finished job or not)
    calls: int  # paid (answered) calls
    errors: int  # failed calls of the finished jobs (their attempt logs)
    rate_limited: int  # of those, answered 429


def add_endpoint_cost(db: sqlite3.Connection, run_id: str, seq: int, endpoint: str, cost_usd: float) -> None:
    """One paid call of job `seq` on `endpoint` (inside the caller's transaction)."""
    db.execute(
        "INSERT INTO endpoint_spend (run_id, seq, endpoint, cost_usd, calls) VALUES (?, ?, ?, ?, 1)"
        " ON CONFLICT (run_id, endpoint, seq) DO UPDATE SET cost_usd = cost_usd + excluded.cost_usd,"
        " calls = calls + 1",
        (run_id, seq, endpoint, cost_usd),
    )


def _no_table(exc: sqlite3.OperationalError) -> bool:
    return "no such table" in str(exc)


class EndpointSpendTable(Connection):
    """Methods of `Journal` for spend by endpoint."""

    def spend_by_endpoint(self, run_id: str) -> dict[str, EndpointSpend]:
        """Each named endpoint the run called: its cost, paid calls, and failed calls (429s among
        them) of the finished jobs; sorted by name. Empty for a run without named endpoints."""
        out: dict[str, EndpointSpend] = {}
        try:
            rows = self.db.execute(
                "SELECT endpoint, SUM(cost_usd), SUM(calls) FROM endpoint_spend WHERE run_id = ?"
                " GROUP BY endpoint",
                (run_id,),
            ).fetchall()
        except sqlite3.OperationalError as exc:  # a journal older than the table, opened to read
            if _no_table(exc):
                return {}
            raise
        for name, cost, calls in rows:
            out[str(name)] = {"cost_usd": float(cost), "calls": int(calls), "errors": 0, "rate_limited": 0}
        for name, errors, limited in self._endpoint_errors(run_id):
            spend = out.setdefault(str(name), {"cost_usd": 0.0, "calls": 0, "errors": 0, "rate_limited": 0})
            spend["errors"], spend["rate_limited"] = int(errors), int(limited)
        return dict(sorted(out.items()))

    def _endpoint_errors(self, run_id: str) -> list[tuple[Any, ...]]:
        """(endpoint, failed calls, 429s) from the finished jobs' attempt logs."""
        return self.db.execute(
            "SELECT json_extract(a.value, '$.endpoint') AS e, COUNT(*),"
            " SUM(json_extract(a.value, '$.status_code') IS 429)"
            " FROM jobs, json_each(jobs.attempts_json) AS a"
            " WHERE jobs.run_id = ? AND jobs.attempts_json LIKE '%\"endpoint\"%'"
            " AND json_type(a.value, '$.endpoint') = 'text' AND json_extract(a.value, '$.endpoint') != ''"
            " AND json_extract(a.value, '$.status_code') IS NOT 200"
            " AND json_extract(a.value, '$.cache_hit') IS NULL"
            " GROUP BY e",
            (run_id,),
        ).fetchall()
