"""A run's jobs as the CI views see them, read from the journal (the source of truth): what each
job came to (`CiJob`: succeeded, failed with its error, failed its checks, or pending), with its
time and cost."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any

from anvil_cli.engine.journal.store import FAILED, PENDING, RUNNING, Journal, RunRow

PASSED, ERRORED, CHECKS_FAILED, SKIPPED = "passed", "failed", "checks_failed", "pending"


@dataclass(frozen=True, slots=True)
class FailedCheck:
    name: str
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class CiJob:
    """One job's outcome: `verdict` is PASSED, ERRORED (the job failed: `error_type`,
    `error`), CHECKS_FAILED (it succeeded, some check did not: `failed_checks`) or SKIPPED
    (pending, or running when the run ended)."""

    id: str
    verdict: str
    model: str
    variant: str | None
    latency_s: float
    cost_usd: float
    error_type: str = ""
    error: str = ""
    status_code: int | None = None
    failed_checks: tuple[FailedCheck, ...] = ()
    checks_total: int = 0


def ci_job(row: dict[str, Any]) -> CiJob:
    """A journal row (`Journal.iter_results`) as a `CiJob`."""
    job = row["job"]
    variant = job.get("variant")
    base = CiJob(
        id=str(row["id"]),
        verdict=PASSED,
        model=str(row["model"] or job.get("model") or ""),
        variant=str(variant) if variant is not None else None,
        latency_s=float(row["latency_s"] or 0.0),
        cost_usd=float(row["cost_usd"] or 0.0),
    )
    state = row["state"]
    if state in (PENDING, RUNNING):
        return replace(base, verdict=SKIPPED)
    if state == FAILED:
        error = row["error"] if isinstance(row["error"], dict) else {}
        code = error.get("status_code")
        return replace(
            base,
            verdict=ERRORED,
            error_type=str(error.get("type") or "error"),
            error=str(error.get("message") or ""),
            status_code=code if isinstance(code, int) else None,
        )
    checks = row.get("checks") or {}
    results = [r for r in checks.get("results") or [] if isinstance(r, dict)]
    failed = tuple(
        FailedCheck(str(r.get("name") or ""), str(r.get("kind") or ""), str(r.get("detail") or ""))
        for r in results
        if not r.get("passed")
    )
    verdict = CHECKS_FAILED if failed else PASSED
    return replace(base, verdict=verdict, failed_checks=failed, checks_total=len(results))


def ci_jobs(journal: Journal, run_id: str) -> Iterator[CiJob]:
    """The run's jobs in batch order."""
    for row in journal.iter_results(run_id):
        yield ci_job(row)


def batch_name(run: RunRow) -> str:
    """The batch file's name (what the run's test suite is called)."""
    return PurePath(run.batch_path).name or run.batch_path or "batch"
