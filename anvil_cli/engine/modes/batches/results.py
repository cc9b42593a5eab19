"""A Message Batches result as a job's result: priced with the batch discount."""

from __future__ import annotations

import time
from typing import Any

from anvil_cli.engine.outcomes import JobResult
from anvil_cli.engine.worker.sdk_message import text_of, usage_of
from anvil_cli.policy.pricing.pricer import Pricer


def error_of(result: Any) -> dict[str, Any]:
    """The error of an `errored`, `expired` or `canceled` batch result."""
    err = getattr(getattr(result, "error", None), "error", None)
    if err is None:
        return {"type": result.type, "message": f"batch request {result.type}", "status_code": None}
    return {"type": err.type, "message": err.message, "status_code": None}


def succeeded_result(job_row: dict[str, Any], model: str, message: Any, pricer: Pricer) -> JobResult:
    """The job's result from a `succeeded` batch result's message."""
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
        cost_usd=pricer.cost_usd(model, usage, batch=True),
        attempt_log=[{"n": job_row["dispatches"], "model": model, "status_code": 200, "batch": True}],
        latency_s=now - (job_row["started_at"] or now),
        finished_at=now,
    )
