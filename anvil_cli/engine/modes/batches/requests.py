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
    custom_id: str = ""


def chunk_bytes(requests_bytes: int) -> int:
    """The create call's body size for requests of these many bytes (give or take the envelope)."""
    return requests_bytes + 64


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
) -> list[BatchItem] | JobResult | Spent:
    """The batch requests of a pending job (one, or its judges': they go in one batch), or its
    result when no request is needed."""
    request = prepare_request(job, settings)
    if followup is not None:
        if dispatches - followup.since >= settings.batches.max_attempts:
            return Spent(job.seq, dispatches)
        if followup.stage == JUDGE:
            return [
                _item(job.seq, model, params, JUDGE_MAX_TOKENS, pricer, tag, part=index)
                for index, model, params in judge_params(job, followup, settings)
            ]
        messages = [*request.params["messages"], *followup.turns]
        params = {**request.params, "messages": messages}
        return [_item(job.seq, request.model, params, job.max_tokens, pricer, tag)]
    hit = cache.get(request.key) if cache is not None and not checked(job) else None
    if hit is not None:
        return result_from_cache(job.seq, hit)
    if request.commands:
        return JobResult.failed_now(job.seq, request.model, "invalid_request_error", TOOLS_NEED_MESSAGES)
    if dispatches >= settings.batches.max_attempts:
        message = f"gave up after {dispatches} submissions"
        return JobResult.failed_now(job.seq, request.model, "batch_error", message)
    return [_item(job.seq, request.model, request.params, job.max_tokens, pricer, tag, request.est_input)]


def _item(
    seq: int,
    model: str,
    params: dict[str, Any],
    max_tokens: int,
    pricer: Pricer,
    tag: str,
    est_input: int | None = None,
    part: int | None = None,
) -> BatchItem:
    est = estimate_input_tokens(params) if est_input is None else est_input
    worst = pricer.worst_case_usd(model, est, max_tokens, batch=True)
    cid = custom_id(tag, seq, part)
    size = len(json.dumps({"custom_id": cid, "params": params})) + 2
    return BatchItem(seq, model, params, worst, size, cid)


def judge_params(job: Job, followup: FollowUp, settings: Settings) -> list[tuple[int, str, dict[str, Any]]]:
    """(index in the job's checks, model, params) of each judge of the job still to answer."""
    specs = specs_of(job.checks)
    question = question_of(job.messages, job.system)
    out = []
    for index in followup.pending_judges():
        spec = specs[index]
        model = judge_model(spec, settings.checks.judge_model)
        asked = judge_request(spec, model, question, followup.answer)
        judge = with_output_schema(asked, grade_schema(spec), native=settings.checks.native_format)
        out.append((index, model, judge))
    return out


def expected_ids(tag: str, seqs: list[int], followups: dict[int, FollowUp]) -> set[str]:
    """The custom_ids of a batch of these jobs, as `prepare` named its requests."""
    out: set[str] = set()
    for seq in seqs:
        followup = followups.get(seq)
        if followup is not None and followup.stage == JUDGE:
            out.update(custom_id(tag, seq, index) for index in followup.pending_judges())
        else:
            out.add(custom_id(tag, seq))
    return out
