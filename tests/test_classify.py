"""What an SDK error means for the job and the run."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest

from anvil_cli.engine.worker.classify import Verdict, classify

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


def _refused(port: int, *, aio: bool) -> anthropic.APIConnectionError:
    """What the real SDK raises for a closed port, on the workers' aiohttp transport or the
    default httpx one (batches mode)."""
    import asyncio

    from anvil_cli.config.endpoint import Endpoint
    from anvil_cli.engine.worker.clients import make_client

    messages = [{"role": "user", "content": "x"}]
    params: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": messages}
    url = f"http://127.0.0.1:{port}"

    async def async_call() -> None:
        client = make_client(Endpoint(url, "test", api_key="k"), 5.0, 1)
        try:
            await client.messages.create(**params)
        finally:
            await client.close()

    try:
        if aio:
            asyncio.run(async_call())
        else:
            with anthropic.Anthropic(api_key="k", base_url=url, max_retries=0) as client:
                client.messages.create(**params)
    except anthropic.APIConnectionError as exc:
        return exc
    raise AssertionError("the call to a closed port succeeded")


@pytest.mark.parametrize("aio", [True, False])
def test_a_refused_connection_names_the_host_and_the_cause(aio: bool) -> None:
    from tests.test_endpoint import closed_port

    port = closed_port()
    info = classify(_refused(port, aio=aio))
    assert info.verdict is Verdict.RETRY and info.breaker_failure and info.type == "connection_error"
    assert info.message == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    assert info.unreachable and info.host == f"127.0.0.1:{port}"


def test_a_timeout_is_retried() -> None:
    info = classify(anthropic.APITimeoutError(request=REQUEST))
    assert info.verdict is Verdict.RETRY and info.type == "timeout"
