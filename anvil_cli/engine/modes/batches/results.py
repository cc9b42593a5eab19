"""A Message Batches result as a job's result: priced with the batch discount."""

from __future__ import annotations

import time
from typing import Any

from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.outcomes import JobError, JobResult
from anvil_cli.engine.worker.sdk_message import text_of, usage_of
from anvil_cli.policy.pricing.pricer import Pricer


def error_of(result: Any) -> JobError:
    """The error of an `errored`, `expired` or `canceled` batch result."""
    err = getattr(getattr(result, "error", None), "error", None)
    if err is None:
        return JobError(result.type, f"batch request {result.type}")
    return JobError(err.type, err.message)


def succeeded_result(
    job_row: dict[str, Any], model: str, message: Any, pricer: Pricer, endpoint: str | None = None
) -> JobResult:
    """The job's result from a `succeeded` batch result's message; `endpoint`: the named
    endpoint the batch went to (None: the run's only one)."""
    usage = usage_of(message)
    now = time.time()
    return JobResult(
        seq=job_row["seq"],
        succeeded=True,
        model=model,
        attempts=1,
        output=text_of(message),
        stop_reason=message.stop_reason,
        usage=usage,
        cost_usd=pricer.cost_usd(model, usage.to_json(), batch=True),
        attempt_log=(Attempt(job_row["dispatches"], model, 200, batch=True, endpoint=endpoint),),
        latency_s=now - (job_row["started_at"] or now),
        finished_at=now,
        endpoint=endpoint,
    )
