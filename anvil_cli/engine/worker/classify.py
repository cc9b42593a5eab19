"""What an API error means for the job and the run: retry, fail the job, or stop the run.

Every provider's errors reach here as the SDK raises them. Bedrock's throttling (429
`ThrottlingException`) and Vertex AI's quota (429 `RESOURCE_EXHAUSTED`) are the SDK's
`RateLimitError`, retried like the Anthropic API's 429s; their error type is read from
Bedrock's `x-amzn-errortype` header and Vertex's `error.status`. An exception frame in a
Bedrock stream arrives as an `APIStatusError` of status 200 (the stream had begun): its type
says what it is (`_BEDROCK_STREAM_ERRORS`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from enum import Enum

import aiohttp
import anthropic
import httpx2

from anvil_cli.config.endpoint import host_of


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
    # the request never reached a server (refused, DNS, connect timeout): `host` is where it went
    unreachable: bool = False
    host: str | None = None

    @property
    def overloaded(self) -> bool:
        """The model is overloaded: the API's (and Vertex AI's) 529, Bedrock's 503
        `ServiceUnavailableException` (what `routing.fallback_after_529` counts)."""
        return self.status_code == 529 or (
            self.status_code == 503 and self.type == "ServiceUnavailableException"
        )


_FAIL_JOB_STATUSES = {400, 404, 413, 422}
_STOP_RUN_STATUSES = {401, 402, 403}
_SPEND_CAP_CODE = "enforced_spend_limit_reached"
# An exception frame in a Bedrock stream (lower-cased type) -> the status Bedrock gives that
# error outside a stream, and the verdict. Its other frames (modelStreamErrorException,
# internalServerException, serviceUnavailableException, modelTimeoutException) are transient.
_BEDROCK_STREAM_ERRORS = {
    "throttlingexception": (429, Verdict.RETRY),  # a rate limit: the governor pauses and learns
    "validationexception": (400, Verdict.FAIL_JOB),  # this request can never succeed
}


def _api_error_type(exc: anthropic.APIStatusError) -> str:
    """The error's type: the API's `error.type`, Vertex AI's `error.status`, Bedrock's
    `x-amzn-errortype` header (`ThrottlingException:http://...`), else the SDK's class name."""
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        for key in ("type", "status"):
            if isinstance(err, dict) and isinstance(err.get(key), str):
                return str(err[key])
    amazon = exc.response.headers.get("x-amzn-errortype")
    if amazon:
        return str(amazon).partition(":")[0]
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


def _innermost(exc: BaseException) -> BaseException | None:
    cause = exc.__cause__ or exc.__context__
    while cause is not None and (cause.__cause__ or cause.__context__) is not None:
        cause = cause.__cause__ or cause.__context__
    return cause


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        out.append(cause)
        cause = cause.__cause__ or cause.__context__
    return out


def _reason(exc: BaseException) -> str:
    """The SDK says only "Connection error."; the reason (refused, reset, DNS) is the cause."""
    cause = _innermost(exc)
    if isinstance(cause, socket.gaierror):
        return f"{cause.strerror or cause} (DNS)"
    if isinstance(cause, OSError) and cause.errno is not None and cause.errno > 0:
        return os.strerror(cause.errno)
    if cause is not None and str(cause):
        return f"{cause} ({type(cause).__name__})"
    return str(exc) or "connection error"


def _host(exc: anthropic.APIConnectionError) -> str | None:
    try:
        return host_of(str(exc.request.url))
    except RuntimeError:  # no request attached
        return None


def _never_connected(chain: list[BaseException]) -> tuple[bool, bool]:
    """(a connect timeout, no connection made at all: refused, DNS, connect timeout). On the
    aiohttp transport the SDK reports a server's disconnect as a ConnectError too: there, aiohttp's
    own connector error is what says no connection was made."""
    aio = [e for e in chain if isinstance(e, aiohttp.ClientError)]
    if aio:
        timeout = any(isinstance(e, aiohttp.ConnectionTimeoutError) for e in aio)
        return timeout, timeout or any(isinstance(e, aiohttp.ClientConnectorError) for e in aio)
    timeout = any(isinstance(e, httpx2.ConnectTimeout) for e in chain)
    return timeout, timeout or any(isinstance(e, httpx2.ConnectError) for e in chain)


def _connection_error(exc: anthropic.APIConnectionError) -> ErrorInfo:
    """Connection errors name the host; those that never reached a server say so."""
    host = _host(exc)
    connect_timeout, unreachable = _never_connected(_chain(exc))
    if connect_timeout:
        message = f"cannot connect to {host}: connect timed out"
    elif isinstance(exc, anthropic.APITimeoutError):
        return ErrorInfo(Verdict.RETRY, "timeout", "request timed out", None, True, host=host)
    elif unreachable:
        message = f"cannot connect to {host}: {_reason(exc)}"
    else:
        message = f"connection to {host} failed: {_reason(exc)}"
    return ErrorInfo(Verdict.RETRY, "connection_error", message, None, True, unreachable, host)


def classify(exc: BaseException) -> ErrorInfo:
    """Decide what an exception from the SDK means."""
    if isinstance(exc, anthropic.APIConnectionError):  # APITimeoutError included
        return _connection_error(exc)
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
    if status == 200:  # an `error` event inside a 200 stream
        bedrock = _BEDROCK_STREAM_ERRORS.get(etype.lower())
        if bedrock is not None:
            return ErrorInfo(bedrock[1], etype, message, bedrock[0], False)
        return ErrorInfo(Verdict.RETRY, etype, message, status, True)  # transient
    if status in (408, 409) or status >= 500:
        return ErrorInfo(Verdict.RETRY, etype, message, status, status >= 500)
    return ErrorInfo(Verdict.FAIL_JOB, etype, message, status, False)
