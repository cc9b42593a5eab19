"""What an API error means for the job and the run: retry, fail the job, or stop the run."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import anthropic


class Verdict(Enum):
    """What to do after an error."""

    RETRY = "retry"  # transient: back off and try again
    FAIL_JOB = "fail_job"  # this request can never succeed: fail the job with the API's message
    STOP_RUN = "stop_run"  # no request can succeed (auth, spend cap): stop the whole run, exit 3


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A flattened, JSON-able view of an error, safe to record (no secrets, no request body)."""

    verdict: Verdict
    type: str
    message: str
    status_code: int | None
    breaker_failure: bool  # counts against the model's circuit breaker

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "status_code": self.status_code}


_FAIL_JOB_STATUSES = {400, 404, 413, 422}
_STOP_RUN_STATUSES = {401, 402, 403}
_SPEND_CAP_CODE = "enforced_spend_limit_reached"


def _api_error_type(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("type"), str):
            return str(err["type"])
    return getattr(exc, "type", None) or type(exc).__name__


def _api_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
    return str(exc.message)


def is_spend_cap(exc: anthropic.APIStatusError) -> bool:
    body = exc.body
    if not isinstance(body, dict):
        return False
    err = body.get("error", body)
    details = err.get("details") if isinstance(err, dict) else None
    return isinstance(details, dict) and details.get("error_code") == _SPEND_CAP_CODE


def _with_cause(exc: BaseException) -> str:
    """The SDK says only "Connection error."; the reason (refused, reset, DNS) is the cause."""
    message = str(exc) or "connection error"
    cause = exc.__cause__ or exc.__context__
    while cause is not None and cause.__cause__ is not None:  # the innermost says the most
        cause = cause.__cause__
    return f"{cause} ({type(cause).__name__})" if cause is not None and str(cause) else message


def classify(exc: BaseException) -> ErrorInfo:
    """Decide what an exception from the SDK means."""
    if isinstance(exc, anthropic.APITimeoutError):
        return ErrorInfo(Verdict.RETRY, "timeout", "request timed out", None, True)
    if isinstance(exc, anthropic.APIConnectionError):
        return ErrorInfo(Verdict.RETRY, "connection_error", _with_cause(exc), None, True)
    if isinstance(exc, anthropic.APIStatusError):
        return _classify_status(exc)
    return ErrorInfo(Verdict.FAIL_JOB, type(exc).__name__, str(exc), None, False)


def _classify_status(exc: anthropic.APIStatusError) -> ErrorInfo:
    status = exc.status_code
    etype, message = _api_error_type(exc), _api_message(exc)
    if status == 429:
        if is_spend_cap(exc):
            return ErrorInfo(Verdict.STOP_RUN, "spend_limit", message, status, False)
        return ErrorInfo(Verdict.RETRY, etype, message, status, False)
    if status in _STOP_RUN_STATUSES:
        return ErrorInfo(Verdict.STOP_RUN, etype, message, status, False)
    if status in _FAIL_JOB_STATUSES:
        return ErrorInfo(Verdict.FAIL_JOB, etype, message, status, False)
    if status == 200:  # an `error` event inside a 200 stream: transient
        return ErrorInfo(Verdict.RETRY, etype, message, status, True)
    if status in (408, 409) or status >= 500:
        return ErrorInfo(Verdict.RETRY, etype, message, status, status >= 500)
    return ErrorInfo(Verdict.FAIL_JOB, etype, message, status, False)
