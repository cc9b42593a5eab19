"""A pending job as a Message Batches request: its params as the API must see them, its worst
case (for the budget) and size (for the batch limits); or its result when it is settled
without a call (a cache hit, tools Anvil would have to run, too many submissions)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.modes.batches.ids import custom_id
from anvil_cli.engine.outcomes import JobResult
from anvil_cli.engine.result_cache import ResultCache, request_key, result_from_cache
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.toolspec import COMMAND_KEY, split_tools
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.policy.prompt_caching import mark_prompt_cache
from anvil_cli.policy.routing import model_for
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


def job_model(job: Job, settings: Settings) -> str:
    return model_for(job, settings.routing)


def uses_commands(request: dict[str, Any]) -> bool:
    tools = request.get("tools") or []
    return any(isinstance(tool, dict) and COMMAND_KEY in tool for tool in tools)


def chunk_bytes(chunk: list[BatchItem]) -> int:
    """The create call's body size for these requests (give or take the envelope)."""
    return sum(i.size for i in chunk) + 64


def _failed(job: Job, model: str, error_type: str, message: str) -> JobResult:
    error = {"type": error_type, "message": message, "status_code": None}
    return JobResult(job.seq, succeeded=False, model=model, attempts=0, error=error, finished_at=time.time())


def prepare(
    job: Job, dispatches: int, settings: Settings, pricer: Pricer, cache: ResultCache | None, tag: str
) -> BatchItem | JobResult:
    """The batch request of a pending job, or its result when no request is needed."""
    model = job_model(job, settings)
    request = job.request(model)
    hit = cache.get(request_key(request)) if cache is not None else None
    if hit is not None:
        return result_from_cache(job.seq, hit)
    if uses_commands(request):
        return _failed(job, model, "invalid_request_error", TOOLS_NEED_MESSAGES)
    if dispatches >= settings.batches.max_attempts:
        return _failed(job, model, "batch_error", f"gave up after {dispatches} submissions")
    params = split_tools(request)[0]  # as the API must see it: no Anvil-only keys
    if settings.cache.prompt_caching:
        params = mark_prompt_cache(params, settings.cache.prompt_caching_min_chars)
    worst = pricer.worst_case_usd(model, estimate_input_tokens(params), job.max_tokens, batch=True)
    size = len(json.dumps({"custom_id": custom_id(tag, job.seq), "params": params})) + 2
    return BatchItem(job.seq, model, params, worst, size)
