"""A Message Batch's results into the journal, in one transaction: succeeded requests become
results (priced with the batch discount, and cached), the others go back to pending for the
next batch or fail once `batches.max_attempts` submissions are spent. A result is never
counted twice: only a job still unfinished takes one. A checked job's answers (and its judges'
replies) are `checking.py`'s: it may stay unfinished, with a follow-up for the next batch."""

from __future__ import annotations

import time
from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.journal.store import BATCH_ENDED, PENDING, RUNNING, BatchRow, Journal
from anvil_cli.engine.modes.batches.checking import Checking
from anvil_cli.engine.modes.batches.followup import JUDGE, FollowUp
from anvil_cli.engine.modes.batches.ids import split_id
from anvil_cli.engine.modes.batches.requests import Spent, checked
from anvil_cli.engine.modes.batches.results import error_of, succeeded_result
from anvil_cli.engine.outcomes import JobError, JobResult
from anvil_cli.engine.requests import prepare_request
from anvil_cli.engine.result_cache import CachedResult, ResultCache
from anvil_cli.jobs.job import Job
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.policy.routing import model_for
from anvil_cli.snapshot.metrics import RunMetrics

MISSING = JobError("missing", "no result")


class Ingest:
    """Records the results of one run's batches (and the results settled without a batch)."""

    def __init__(
        self,
        journal: Journal,
        run_id: str,
        settings: Settings,
        metrics: RunMetrics,
        pricer: Pricer,
        cache: ResultCache | None,
        endpoint: str | None = None,  # the named endpoint the batches go to; None: the only one
    ) -> None:
        self.journal = journal
        self.run_id = run_id
        self.settings = settings
        self.metrics = metrics
        self.pricer = pricer
        self.cache = cache
        self.endpoint = endpoint
        self.checking = Checking(journal, run_id, settings, pricer, endpoint, self._record_journaled)

    def batch(self, row: BatchRow, entries: list[Any], tag: str) -> dict[int, float]:
        """Record an ended batch's result `entries` and mark it ended; what its results cost,
        job by job (seq -> USD; a job whose results cost nothing is left out)."""
        jobs = {r["seq"]: r for r in self.journal.job_rows(self.run_id, row.seqs)}
        followups = {
            s: FollowUp.from_json(f) for s, f in self.journal.followups(self.run_id, row.seqs).items()
        }
        judging = {s for s, f in followups.items() if f.stage == JUDGE}  # their judges' requests
        costs: dict[int, float] = {}
        with self.journal.transaction():
            answered: set[int] = set()
            replies: dict[int, dict[int, Any]] = {s: {} for s in judging & set(jobs)}
            for entry in entries:
                found = split_id(entry.custom_id, tag)
                if found is None or found[0] not in jobs:
                    continue
                seq, part = found
                if seq in replies and part is not None:
                    replies[seq].setdefault(part, entry.result)
                elif seq not in judging and part is None and seq not in answered:
                    answered.add(seq)
                    _add(costs, seq, self._ingest(jobs[seq], entry.result, followups.get(seq)))
            for seq, judged in replies.items():
                if jobs[seq]["state"] in (PENDING, RUNNING):
                    _add(costs, seq, self.checking.judges_replied(jobs[seq], followups[seq], judged))
            for seq in set(row.seqs) - answered - judging:  # not in the results: treat as errored
                self._retry_or_fail(jobs[seq], MISSING, followups.get(seq))
            self.journal.set_batch(self.run_id, row.n, BATCH_ENDED)
        return costs

    def _ingest(self, job_row: dict[str, Any], result: Any, followup: FollowUp | None) -> float:
        """Record one result; what it cost."""
        if job_row["state"] not in (PENDING, RUNNING):
            return 0.0  # already settled (never count a result twice)
        if result.type != "succeeded":
            self._retry_or_fail(job_row, error_of(result), followup)
            return 0.0
        job = Job.from_record(job_row["job"])
        if followup is not None or checked(job):
            return self.checking.answered(job_row, followup, result.message)
        request = prepare_request(job, self.settings)
        done = succeeded_result(job_row, request.model, result.message, self.pricer, self.endpoint)
        self.record(done)
        if self.cache is not None:
            entry = CachedResult(request.model, done.output, done.stop_reason, done.usage, done.cost_usd)
            self.cache.put(request.key, entry)
        return done.cost_usd

    def _retry_or_fail(self, job_row: dict[str, Any], error: JobError, followup: FollowUp | None) -> None:
        seq = job_row["seq"]
        since = followup.since if followup is not None else 0
        if job_row["dispatches"] - since < self.settings.batches.max_attempts:
            self.journal.return_to_pending(self.run_id, [seq], attempts=1)
            return
        if followup is not None:
            self.checking.gave_up(job_row, followup, error)
            return
        model = model_for(Job.from_record(job_row["job"]), self.settings.routing)
        self.record(
            JobResult(
                seq=seq,
                succeeded=False,
                model=model,
                attempts=1,
                error=error,
                finished_at=time.time(),
                endpoint=self.endpoint,
            )
        )

    def spent(self, item: Spent) -> None:
        """A checked job's follow-up was submitted `batches.max_attempts` times (its batches
        were refused or lost): given up as an errored request would be."""
        error = JobError("batch_error", f"gave up after {item.dispatches} submissions")
        with self.journal.transaction():
            rows = self.journal.job_rows(self.run_id, [item.seq])
            followup = self.journal.followups(self.run_id, [item.seq]).get(item.seq)
            if rows and followup is not None:
                self.checking.gave_up(rows[0], FollowUp.from_json(followup), error)

    def record(self, result: JobResult) -> None:
        self.journal.record_result(self.run_id, result)
        self.metrics.on_result(result, time.monotonic())

    def _record_journaled(self, result: JobResult) -> None:
        """A checked job's result: each of its calls' cost was journaled as it was ingested."""
        self.journal.record_result(self.run_id, result, cost_journaled=True)
        self.metrics.on_result(result, time.monotonic())


def _add(costs: dict[int, float], seq: int, usd: float) -> None:
    if usd:
        costs[seq] = costs.get(seq, 0.0) + usd
