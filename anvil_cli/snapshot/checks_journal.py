"""A run's checks from the journal (`anvil status`, `GET /status`, `/metrics`, the web page,
the report): `checks_of_run(journal, run_id, by)`, the `ChecksSummary` of every job of the run,
or None when none has checks (read without a JSON decode of any row then). The rows read are
`job_row`'s keys that `summarize_checks` needs (state, model, cost, the job and its checks),
not the answers or attempt logs."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from anvil_cli.engine.journal.store import Journal
from anvil_cli.snapshot.checks import ChecksSummary, ChecksTally, summarize_checks


def has_checks(journal: Journal, run_id: str) -> bool:
    """Whether any job of the run has a checks record (a journal too old to keep them: no)."""
    if "checks_json" not in journal.job_cols:
        return False
    row = journal.db.execute(
        "SELECT 1 FROM jobs WHERE run_id = ? AND checks_json IS NOT NULL LIMIT 1", (run_id,)
    ).fetchone()
    return row is not None


def check_rows(journal: Journal, run_id: str) -> Iterator[dict[str, Any]]:
    """The run's jobs in batch order, with the keys of `job_row` that checks are counted from."""
    cur = journal.db.execute(
        "SELECT state, model, cost_usd, job_json, checks_json FROM jobs WHERE run_id = ? ORDER BY seq",
        (run_id,),
    )
    for state, model, cost, job_json, checks_json in cur:
        yield {
            "state": state,
            "model": model,
            "cost_usd": cost,
            "job": json.loads(job_json),
            "checks": json.loads(checks_json) if checks_json else None,
        }


def checks_of_run(journal: Journal, run_id: str, by: Sequence[str] = ()) -> ChecksSummary | None:
    """The run's checks over all its jobs, grouped by model, variant and each key of `by`."""
    if not has_checks(journal, run_id):
        return None
    return summarize_checks(check_rows(journal, run_id), by)


def tally_of_run(journal: Journal, run_id: str) -> ChecksTally:
    """What a resumed run's earlier sessions checked, for its live figures to go on from."""
    tally = ChecksTally()
    if has_checks(journal, run_id):
        for row in check_rows(journal, run_id):
            tally.add_row(row)
    return tally
