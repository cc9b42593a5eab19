"""What an agent tells the governor of a call it made (`Outcome`): the tokens, cost and
`anthropic-ratelimit-*` headers of an answer; the status, `retry-after` and verdict of an error.

An error no retry on that endpoint can fix (`Verdict.STOP_RUN`: its credential, permission or
spend cap) on a named endpoint is `refused`: the governor takes the endpoint out until its probe
succeeds. On the run's only endpoint it is not: the worker stops the run, as before endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping

import anthropic

from anvil_cli.engine.outcomes import Usage
from anvil_cli.engine.worker.classify import ErrorInfo, Verdict
from anvil_cli.policy.governor import Outcome, retry_after_s

__all__ = ["answered", "failed", "ratelimit_headers", "refusal_message"]


def ratelimit_headers(raw_headers: Mapping[str, str] | None) -> dict[str, str]:
    """The `anthropic-ratelimit-*` headers of a response, lower-cased (what the governor reads)."""
    if raw_headers is None:
        return {}
    return {k.lower(): v for k, v in raw_headers.items() if k.lower().startswith("anthropic-ratelimit-")}


def answered(usage: Usage, cost_usd: float, status_code: int, headers: Mapping[str, str]) -> Outcome:
    """An answered call: tokens as the rate limiter counts them, its cost and headers."""
    return Outcome(
        ok=True,
        input_tokens=usage.counted_input,
        output_tokens=usage.output_tokens,
        cost_usd=cost_usd,
        status_code=status_code,
        headers=ratelimit_headers(headers),
    )


def refusal_message(info: ErrorInfo, redacted_message: str) -> str:
    """How a refusal is told when it stops the run: "authentication_error (401): invalid x-api-key"."""
    return f"{info.type} ({info.status_code}): {redacted_message}"


def failed(exc: anthropic.APIError, info: ErrorInfo, endpoint: str, redacted_message: str) -> Outcome:
    """A call that raised `exc` (classified as `info`) on `endpoint` ("": the run's only one)."""
    response = getattr(exc, "response", None)
    refused = info.verdict is Verdict.STOP_RUN
    return Outcome(
        ok=False,
        status_code=info.status_code,
        breaker_failure=info.breaker_failure,
        retry_after_s=retry_after_s(exc) if info.status_code == 429 else None,
        headers=ratelimit_headers(response.headers if response is not None else None),
        refused=refused and bool(endpoint),
        error=info.type,
        message=refusal_message(info, redacted_message) if refused else "",
    )
