"""A pending job as a Message Batches request: its params as the API must see them, its worst
case (for the budget) and size (for the batch limits); or its result when it is settled
without a call (a cache hit, tools Anvil would have to run, too many submissions). A checked
job's follow-up (`followup.py`) is its next request: a re-ask or a judge's. A checked job
never takes its answer from the result cache (an answer must be checked, re-asked, judged,
all journaled as the run's own calls)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.modes.batches.followup import JUDGE, FollowUp
from anvil_cli.engine.modes.batches.ids import custom_id
from anvil_cli.engine.outcomes import JobResult
from anvil_cli.engine.requests import prepare_request, with_output_schema
from anvil_cli.engine.result_cache import ResultCache, result_from_cache
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.toolspec import COMMAND_KEY
from anvil_cli.policy.checks.judge import (
    JUDGE_MAX_TOKENS,
    grade_schema,
    judge_model,
    judge_request,
    question_of,
)
from anvil_cli.policy.checks.spec import specs_of
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.policy.tokens import estimate_input_tokens

TOOLS_NEED_MESSAGES = (
    f"tools with {COMMAND_KEY} need --mode messages: a Message Batches request is single-turn,"
    " so Anvil cannot run the tool and send its result back"
)


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One request of a batch about to be created."""

    seq: int
    model: str
    params: dict[str, Any]
    worst_usd: float
    size: int  # bytes of its JSON in the create call's body


def chunk_bytes(chunk: list[BatchItem]) -> int:
    """The create call's body size for these requests (give or take the envelope)."""
    return sum(i.size for i in chunk) + 64


@dataclass(frozen=True, slots=True)
class Spent:
    """A follow-up whose stage has been submitted `batches.max_attempts` times already."""

    seq: int
    dispatches: int


def checked(job: Job) -> bool:
    """Is the job's answer checked (an output schema, checks)?"""
    return job.output_schema is not None or bool(job.checks)


def prepare(
    job: Job,
    dispatches: int,
    settings: Settings,
    pricer: Pricer,
    cache: ResultCache | None,
    tag: str,
    followup: FollowUp | None = None,
) -> BatchItem | JobResult | Spent:
    """The batch request of a pending job, or its result when no request is needed."""
    request = prepare_request(job, settings)
    if followup is not None:
        if dispatches - followup.since >= settings.batches.max_attempts:
            return Spent(job.seq, dispatches)
        model, params, max_tokens = _followup_params(job, request.params, followup, settings)
        return _item(job.seq, model, params, max_tokens, pricer, tag)
    hit = cache.get(request.key) if cache is not None and not checked(job) else None
    if hit is not None:
        return result_from_cache(job.seq, hit)
    if request.commands:
        return JobResult.failed_now(job.seq, request.model, "invalid_request_error", TOOLS_NEED_MESSAGES)
    if dispatches >= settings.batches.max_attempts:
        message = f"gave up after {dispatches} submissions"
        return JobResult.failed_now(job.seq, request.model, "batch_error", message)
    return _item(job.seq, request.model, request.params, job.max_tokens, pricer, tag, request.est_input)


def _item(
    seq: int,
    model: str,
    params: dict[str, Any],
    max_tokens: int,
    pricer: Pricer,
    tag: str,
    est_input: int | None = None,
) -> BatchItem:
    est = estimate_input_tokens(params) if est_input is None else est_input
    worst = pricer.worst_case_usd(model, est, max_tokens, batch=True)
    size = len(json.dumps({"custom_id": custom_id(tag, seq), "params": params})) + 2
    return BatchItem(seq, model, params, worst, size)


def _followup_params(
    job: Job, params: dict[str, Any], followup: FollowUp, settings: Settings
) -> tuple[str, dict[str, Any], int]:
    """(model, params, max_tokens) of a checked job's next request: its conversation with the
    invalid answers and re-asks appended, or the next judge's request."""
    if followup.stage != JUDGE:
        messages = [*params["messages"], *followup.turns]
        return str(params["model"]), {**params, "messages": messages}, job.max_tokens
    index = followup.next_judge()
    assert index is not None, "a judge stage with every judge answered is recorded, not resubmitted"
    spec = specs_of(job.checks)[index]
    model = judge_model(spec, settings.checks.judge_model)
    asked = judge_request(spec, model, question_of(job.messages, job.system), followup.answer)
    judge = with_output_schema(asked, grade_schema(spec), native=settings.checks.native_format)
    return model, judge, JUDGE_MAX_TOKENS
