"""Spend by endpoint: which named endpoint (`endpoints:` in anvil.yaml) each paid call went to and
what it cost there, one row per (run, endpoint, job), added to as each call is settled
(`CallSettled.endpoint`), in the same transaction as the job's own cost (`jobs.add_cost`). So the
figures are exact, survive a crash and a resume, and a job that failed over to another endpoint
has a row on each. Failed calls cost nothing and are not settled: they are counted on the same
rows when the job's result is recorded, from its attempt log (`Attempt.endpoint`).

Calls to the run's only endpoint (no `endpoints:` section, endpoint "") are not written here: a
run without named endpoints has no rows, and its views show no endpoint block. A journal older
than the table gains it when it is opened to write (the schema's CREATE IF NOT EXISTS); opened to
read, it has no table and no endpoint spend."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable
from typing import TypedDict

from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.journal.connection import Connection

_UPSERT = (
    "INSERT INTO endpoint_spend (run_id, seq, endpoint, cost_usd, calls, errors, rate_limited)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, endpoint, seq) DO UPDATE SET"
    " cost_usd = cost_usd + excluded.cost_usd, calls = calls + excluded.calls,"
    " errors = errors + excluded.errors, rate_limited = rate_limited + excluded.rate_limited"
)


class EndpointSpend(TypedDict):
    """One named endpoint's share of a run, from the journal."""

    cost_usd: float  # what its calls cost (every settled call, finished job or not)
    calls: int  # paid (answered) calls
    errors: int  # failed calls of the finished jobs (their attempt logs)
    rate_limited: int  # of those, answered 429


def add_endpoint_cost(db: sqlite3.Connection, run_id: str, seq: int, endpoint: str, cost_usd: float) -> None:
    """One paid call of job `seq` on `endpoint` (inside the caller's transaction)."""
    db.execute(_UPSERT, (run_id, seq, endpoint, cost_usd, 1, 0, 0))


def add_endpoint_errors(db: sqlite3.Connection, run_id: str, seq: int, log: Iterable[Attempt]) -> None:
    """The failed calls of a finished job's attempt log, on the named endpoints they went to
    (inside the caller's transaction, once per result)."""
    failed = [a for a in log if a.endpoint and not a.ok and not a.cache_hit]
    if not failed:  # most results: nothing to write
        return
    errors: Counter[str] = Counter()
    limited: Counter[str] = Counter()
    for attempt in failed:
        if attempt.endpoint:
            errors[attempt.endpoint] += 1
            limited[attempt.endpoint] += attempt.status_code == 429
    for endpoint, n in errors.items():
        db.execute(_UPSERT, (run_id, seq, endpoint, 0.0, 0, n, limited[endpoint]))


class EndpointSpendTable(Connection):
    """Methods of `Journal` for spend by endpoint."""

    def spend_by_endpoint(self, run_id: str) -> dict[str, EndpointSpend]:
        """Each named endpoint the run called: its cost, paid calls, and failed calls (429s among
        them) of the finished jobs; sorted by name. Empty for a run without named endpoints."""
        try:
            rows = self.db.execute(
                "SELECT endpoint, SUM(cost_usd), SUM(calls), SUM(errors), SUM(rate_limited)"
                " FROM endpoint_spend WHERE run_id = ? GROUP BY endpoint ORDER BY endpoint",
                (run_id,),
            ).fetchall()
        except sqlite3.OperationalError as exc:  # a journal older than the table, opened to read
            if "no such table" in str(exc):
                return {}
            raise
        return {
            str(name): {
                "cost_usd": float(cost),
                "calls": int(calls),
                "errors": int(e),
                "rate_limited": int(r),
            }
            for name, cost, calls, e, r in rows
        }
