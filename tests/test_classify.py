"""What an SDK error means for the job and the run."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest

from anvil_cli.engine.classify import Verdict, classify

REQUEST = httpx2.Request("POST", "http://127.0.0.1/v1/messages")


def status_error(status: int, etype: str, **error: Any) -> anthropic.APIStatusError:
    body = {"type": "error", "error": {"type": etype, "message": f"{etype} happened", **error}}
    response = httpx2.Response(status, json=body, request=REQUEST)
    client = anthropic.Anthropic(api_key="k", base_url="http://127.0.0.1", max_retries=0)
    try:
        exc = client._make_status_error(f"{status}", body=body, response=response)
    finally:
        client.close()
    return exc


@pytest.mark.parametrize(
    ("status", "etype", "verdict", "breaker"),
    [
        (429, "rate_limit_error", Verdict.RETRY, False),
        (408, "timeout_error", Verdict.RETRY, False),
        (409, "conflict_error", Verdict.RETRY, False),
        (500, "api_error", Verdict.RETRY, True),
        (503, "api_error", Verdict.RETRY, True),
        (529, "overloaded_error", Verdict.RETRY, True),
        (400, "invalid_request_error", Verdict.FAIL_JOB, False),
        (404, "not_found_error", Verdict.FAIL_JOB, False),
        (413, "request_too_large", Verdict.FAIL_JOB, False),
        (401, "authentication_error", Verdict.STOP_RUN, False),
        (403, "permission_error", Verdict.STOP_RUN, False),
    ],
)
def test_status_codes(status: int, etype: str, verdict: Verdict, breaker: bool) -> None:
    info = classify(status_error(status, etype))
    assert (info.verdict, info.breaker_failure, info.status_code, info.type) == (
        verdict,
        breaker,
        status,
        etype,
    )
    assert info.message == f"{etype} happened"  # the API's own message


def test_a_spend_cap_429_stops_the_run() -> None:
    exc = status_error(429, "rate_limit_error", details={"error_code": "enforced_spend_limit_reached"})
    info = classify(exc)
    assert info.verdict is Verdict.STOP_RUN and info.type == "spend_limit"


def test_a_connection_error_names_its_cause() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as cause:
            raise anthropic.APIConnectionError(request=REQUEST) from cause
    except anthropic.APIConnectionError as exc:
        info = classify(exc)
    assert info.verdict is Verdict.RETRY and info.breaker_failure and info.type == "connection_error"
    assert "Connection refused" in info.message and "ConnectionRefusedError" in info.message


def test_a_timeout_is_retried() -> None:
    info = classify(anthropic.APITimeoutError(request=REQUEST))
    assert info.verdict is Verdict.RETRY and info.type == "timeout"
