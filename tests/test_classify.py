"""What an SDK error means for the job and the run."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import pytest

from anvil_cli.engine.worker.classify import Verdict, classify
from anvil_cli.sim import SimConfig, SimServer

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


# -- other providers ---------------------------------------------------------------------------


def _bedrock_stream_failing_with(kind: str) -> anthropic.APIStatusError:
    """What the SDK's real Bedrock client raises for a stream that begins (200) and then carries
    an exception frame `kind`, framed by the simulator's event-stream encoder."""
    import asyncio

    from anvil_cli.sim.providers import eventstream

    start = {
        "type": "message_start",
        "message": {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 0},
        },
    }
    body = eventstream.chunk(json.dumps(start).encode()) + eventstream.exception(kind, f"{kind} (test)")

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": eventstream.CONTENT_TYPE})

    async def call() -> None:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(answer))
        async with anthropic.AsyncAnthropicBedrock(
            api_key="k",
            aws_region="us-east-1",
            base_url="http://bedrock.test",
            http_client=http,
            max_retries=0,
        ) as client:
            params: dict[str, Any] = {"model": "us.anthropic.claude-haiku-4-5-20251001-v1:0", "max_tokens": 8}
            async with client.messages.stream(
                **params, messages=[{"role": "user", "content": "x"}]
            ) as stream:
                await stream.get_final_message()

    try:
        asyncio.run(call())
    except anthropic.APIStatusError as exc:
        return exc
    raise AssertionError("the stream did not fail")


@pytest.mark.parametrize(
    ("kind", "verdict", "status", "breaker"),
    [
        ("throttlingException", Verdict.RETRY, 429, False),  # a rate limit: the governor pauses, learns
        ("validationException", Verdict.FAIL_JOB, 400, False),
        ("modelStreamErrorException", Verdict.RETRY, 200, True),
        ("internalServerException", Verdict.RETRY, 200, True),
        ("serviceUnavailableException", Verdict.RETRY, 200, True),
    ],
)
def test_a_bedrock_stream_s_exception_frame(kind: str, verdict: Verdict, status: int, breaker: bool) -> None:
    exc = _bedrock_stream_failing_with(kind)
    assert exc.status_code == 200  # the stream had begun
    info = classify(exc)
    assert (info.verdict, info.status_code, info.breaker_failure, info.type) == (
        verdict,
        status,
        breaker,
        kind,
    )
    assert info.message == f"{kind} (test)"


def test_provider_throttling_is_a_rate_limit_with_the_provider_s_type() -> None:
    """Bedrock's 429 names its type in `x-amzn-errortype`, Vertex AI's in `error.status`."""
    from tests.test_sim_bedrock import invoke as bedrock_invoke
    from tests.test_sim_bedrock import run as bedrock_run
    from tests.test_sim_vertex import predict as vertex_predict
    from tests.test_sim_vertex import run as vertex_run

    server = SimServer(SimConfig()).start_thread()
    try:
        for run, call in ((bedrock_run, bedrock_invoke), (vertex_run, vertex_predict)):
            with pytest.raises(anthropic.RateLimitError) as caught:
                run(server, call(text="@sim{status=429}"))
            info = classify(caught.value)
            assert (info.verdict, info.status_code, info.breaker_failure) == (Verdict.RETRY, 429, False)
            assert info.type in ("ThrottlingException", "RESOURCE_EXHAUSTED")
            assert info.message and "Error code" not in info.message  # the provider's own words
    finally:
        server.stop()


def test_a_bedrock_endpoint_s_refused_connection_names_its_host() -> None:
    import asyncio

    from anvil_cli.config.endpoint import Endpoint
    from anvil_cli.engine.worker.clients import make_client
    from tests.test_endpoint import closed_port

    port = closed_port()
    endpoint = Endpoint(
        f"http://127.0.0.1:{port}",
        "endpoints",
        name="b",
        provider="bedrock",
        region="us-east-1",
        api_key="bedrock-key",
    )

    async def call() -> None:
        client = make_client(endpoint, 5.0, 1)
        try:
            await client.messages.create(
                model="us.anthropic.claude-haiku-4-5-20251001-v1:0",
                max_tokens=8,
                messages=[{"role": "user", "content": "x"}],
            )
        finally:
            await client.close()

    with pytest.raises(anthropic.APIConnectionError) as caught:
        asyncio.run(call())
    info = classify(caught.value)
    assert info.unreachable and info.host == f"127.0.0.1:{port}" == endpoint.host
    assert info.message == f"cannot connect to 127.0.0.1:{port}: Connection refused"
