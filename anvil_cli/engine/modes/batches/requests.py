"""A pending job as a Message Batches request: its params as the API must see them, its worst
case (for the budget) and size (for the batch limits); or its result when it is settled
without a call (a cache hit, tools Anvil would have to run, too many submissions)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.modes.batches.ids import custom_id
from anvil_cli.engine.outcomes import JobResult
from anvil_cli.engine.requests import prepare_request
from anvil_cli.engine.result_cache import ResultCache, result_from_cache
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.toolspec import COMMAND_KEY
from anvil_cli.policy.pricing.pricer import Pricer

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


def prepare(
    job: Job, dispatches: int, settings: Settings, pricer: Pricer, cache: ResultCache | None, tag: str
) -> BatchItem | JobResult:
    """The batch request of a pending job, or its result when no request is needed."""
    request = prepare_request(job, settings)
    hit = cache.get(request.key) if cache is not None else None
    if hit is not None:
        return result_from_cache(job.seq, hit)
    if request.commands:
        return JobResult.failed_now(job.seq, request.model, "invalid_request_error", TOOLS_NEED_MESSAGES)
    if dispatches >= settings.batches.max_attempts:
        message = f"gave up after {dispatches} submissions"
        return JobResult.failed_now(job.seq, request.model, "batch_error", message)
    model, params = request.model, request.params
    worst = pricer.worst_case_usd(model, request.est_input, job.max_tokens, batch=True)
    size = len(json.dumps({"custom_id": custom_id(tag, job.seq), "params": params})) + 2
    return BatchItem(job.seq, model, params, worst, size)
