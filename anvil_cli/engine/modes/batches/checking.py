"""Checking a job's answer in `--mode batches`, as messages mode does, a batch at a time: the
answer validated against the job's output schema (`policy/checks/schema.py`), an invalid one
re-asked in a follow-up batch (the conversation, the invalid answer, the re-ask with its error),
up to `checks.max_reasks` times, then the job fails "invalid_output" with its last answer kept
(its other checks not run, as in messages mode); a valid answer's deterministic checks run at
once and its judges go together in a follow-up batch (`requests.py` builds those requests); a
judge whose request fails for good fails its check, not the job.

Every call's cost is added to the job's row (`Journal.add_cost`, at the batch price) in the
transaction that ingests it, with the follow-up that says what comes next (`followup.py`), so
the journal alone says where a checked job stands; its result is recorded once every check is
done, with `cost_journaled`, and carries its `CheckRecord` (re-asks and judges' cost apart)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.modes.batches.followup import JUDGE, REASK, FollowUp
from anvil_cli.engine.modes.batches.results import error_of
from anvil_cli.engine.outcomes import JobError, JobResult
from anvil_cli.engine.requests import prepare_request
from anvil_cli.engine.worker.sdk_message import text_of, tokens_of, usage_of
from anvil_cli.jobs.job import Job
from anvil_cli.policy.checks.evaluate import evaluate_all
from anvil_cli.policy.checks.judge import failed_judgement, judge_model, read_judgement
from anvil_cli.policy.checks.record import CheckRecord, CheckResult
from anvil_cli.policy.checks.schema import SchemaVerdict, check_answer, reask_message
from anvil_cli.policy.checks.spec import specs_of
from anvil_cli.policy.pricing.pricer import Pricer

INVALID_OUTPUT = "invalid_output"


class Checking:
    """The answers (and judges' replies) of a run's checked jobs, into the journal. Called inside
    the transaction that ingests a batch; `record(result)` records a finished job's result (its
    cost already journaled) and tells the metrics."""

    def __init__(
        self,
        journal: Journal,
        run_id: str,
        settings: Settings,
        pricer: Pricer,
        endpoint: str | None,
        record: Callable[[JobResult], None],
    ) -> None:
        self.journal = journal
        self.run_id = run_id
        self.settings = settings
        self.pricer = pricer
        self.endpoint = endpoint
        self.record = record

    def answered(self, job_row: dict[str, Any], followup: FollowUp | None, message: Any) -> float:
        """A succeeded request of a checked job for its answer: the first or a re-ask's. What
        it cost."""
        job = Job.from_record(job_row["job"])
        model = prepare_request(job, self.settings).model
        fu, cost = self._called(job_row, followup or FollowUp(), model, message, REASK if followup else None)
        self._answer(job_row, job, fu, model, text_of(message), message.stop_reason)
        return cost

    def judges_replied(self, job_row: dict[str, Any], fu: FollowUp, replies: dict[int, Any]) -> float:
        """The judges' requests of one batch (judge index -> its batch result; absent: missing
        from the results). Each answered one is graded; an errored or missing one is asked again
        in the next batch while its stage has submissions left, else its check fails. The job's
        result once every judge has one. What the judges cost."""
        specs = specs_of(Job.from_record(job_row["job"]).checks)
        spent = job_row["dispatches"] - fu.since >= self.settings.batches.max_attempts
        total = 0.0
        for index in fu.pending_judges():
            spec, result = specs[index], replies.get(index)
            model = judge_model(spec, self.settings.checks.judge_model)
            if result is not None and result.type == "succeeded":
                fu, cost = self._called(job_row, fu, model, result.message, JUDGE)
                judged = read_judgement(spec, model, text_of(result.message), tokens_of(result.message))
                fu = fu.judged(index, judged)
                total += cost
            elif spent:
                error = error_of(result) if result is not None else JobError("missing", "no result")
                fu = fu.judged(index, failed_judgement(spec, model, f"{error.type}: {error.message}"))
        self._judges_done_or_again(job_row, fu)
        return total

    def _called(
        self, job_row: dict[str, Any], fu: FollowUp, model: str, message: Any, purpose: str | None
    ) -> tuple[FollowUp, float]:
        """A call answered: its cost journaled (at the batch price), its attempt logged."""
        usage = usage_of(message)
        cost = self.pricer.cost_usd(model, usage.to_json(), batch=True)
        self.journal.add_cost(self.run_id, job_row["seq"], cost, self.endpoint or "")
        attempt = Attempt(
            job_row["dispatches"], model, 200, batch=True, endpoint=self.endpoint, purpose=purpose
        )
        return fu.called(usage, cost, attempt), cost

    def gave_up(self, job_row: dict[str, Any], followup: FollowUp, error: JobError) -> None:
        """A follow-up request failed for good: a re-ask fails the job with the request's error
        (what was asked and paid before is kept); a judge fails its check and the job goes on."""
        job = Job.from_record(job_row["job"])
        if followup.stage != JUDGE:  # a re-ask: the job's last answer and its schema error are kept
            said = [t["content"] for t in followup.turns if t.get("role") == "assistant"]
            last = replace(
                followup,
                answer=followup.answer if followup.answer is not None else (said[-1] if said else None),
                schema_result=followup.schema_result or SchemaVerdict(error=followup.error).as_check(),
            )
            self._fail(job_row, last, prepare_request(job, self.settings).model, error)
            return
        for index in followup.pending_judges():
            spec = specs_of(job.checks)[index]
            model = judge_model(spec, self.settings.checks.judge_model)
            failed = failed_judgement(spec, model, f"{error.type}: {error.message}")
            followup = followup.judged(index, failed)
        self._judges_done_or_again(job_row, followup)

    # -- the answer ---------------------------------------------------------------------------

    def _answer(
        self, job_row: dict[str, Any], job: Job, fu: FollowUp, model: str, text: str, stop_reason: str | None
    ) -> None:
        schema_result = None
        if job.output_schema is not None:
            verdict = check_answer(job.output_schema, text)
            if not verdict.valid:
                assert verdict.error is not None
                if fu.reasks < self.settings.checks.max_reasks:
                    turn = reask_message(job.output_schema, verdict.error)
                    fu = fu.reask(text, turn, verdict.error, job_row["dispatches"])
                    self.journal.set_followup(self.run_id, job_row["seq"], fu.to_json())
                    return
                fu = _answer_of(fu, job_row, model, text, stop_reason, verdict.as_check(), ())
                self._fail(job_row, fu, model, JobError(INVALID_OUTPUT, verdict.error))
                return
            schema_result = verdict.as_check()
        fu = _answer_of(fu, job_row, model, text, stop_reason, schema_result, job.checks)
        self._judges_done_or_again(job_row, fu)

    def _judges_done_or_again(self, job_row: dict[str, Any], fu: FollowUp) -> None:
        """The job's result once every judge has answered, else the judges left to ask."""
        if fu.pending_judges():
            self.journal.set_followup(self.run_id, job_row["seq"], fu.to_json())
        else:
            self._finish(job_row, fu)

    # -- the result -----------------------------------------------------------------------------

    def _finish(self, job_row: dict[str, Any], fu: FollowUp) -> None:
        self._result(job_row, fu, fu.model or "", None)

    def _fail(self, job_row: dict[str, Any], fu: FollowUp, model: str, error: JobError) -> None:
        self._result(job_row, fu, model, error)

    def _result(self, job_row: dict[str, Any], fu: FollowUp, model: str, error: JobError | None) -> None:
        now = time.time()
        results = tuple(r for r in (fu.schema_result, *fu.results) if r is not None)
        checks = CheckRecord(results, fu.reasks, fu.reask_cost_usd, fu.judge_cost_usd)
        self.journal.set_followup(self.run_id, job_row["seq"], None)
        self.record(
            JobResult(
                seq=job_row["seq"],
                succeeded=error is None,
                model=model,
                attempts=len(fu.attempt_log),
                output=fu.answer,
                stop_reason=fu.stop_reason,
                usage=fu.usage,
                cost_usd=fu.cost_usd,
                error=error,
                attempt_log=fu.attempt_log,
                latency_s=now - (job_row["started_at"] or now),
                finished_at=now,
                endpoint=self.endpoint,
                checks=checks,
            )
        )


def _answer_of(
    fu: FollowUp,
    job_row: dict[str, Any],
    model: str,
    text: str,
    stop_reason: str | None,
    schema_result: CheckResult | None,
    checks: tuple[dict[str, Any], ...],
) -> FollowUp:
    """The follow-up holding the job's last answer and its deterministic checks' results (a
    judge's: None, to be asked), its judge stage starting now."""
    specs = specs_of(checks)
    plain = [s for s in specs if not s.is_judge]
    found = iter(evaluate_all(plain, text) if plain else [])
    results = tuple(None if s.is_judge else next(found) for s in specs)
    return replace(
        fu,
        stage=JUDGE,
        since=job_row["dispatches"],
        answer=text,
        stop_reason=stop_reason,
        model=model,
        schema_result=schema_result,
        results=results,
    )
