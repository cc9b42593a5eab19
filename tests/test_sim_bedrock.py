"""The simulator in Amazon Bedrock's wire format, driven by the SDK's real `AsyncAnthropicBedrock`.

Over real HTTP on 127.0.0.1, SigV4-signed by the SDK (botocore), without retries. The
simulators with limits read `sim_clock`, so a bucket refills only when a test says so.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anthropic
import pytest
from anthropic import AsyncAnthropicBedrock
from botocore.eventstream import EventStreamBuffer

from anvil_cli.sim import SimServer
from anvil_cli.sim.providers.models import bedrock_model
from tests.sim_fixtures import (  # noqa: F401
    ClientFor,
    SimFactory,
    SimSleeps,
    create,
    fixture_client_for,
    fixture_sim_clock,
    fixture_sim_factory,
    fixture_sim_sleeps,
    raw_post,
    user,
)

SONNET_ID = "us.anthropic.claude-sonnet-4-6-v1:0"
ACCESS_KEY = "AKIASIMULATEDKEYID01"
SECRET_KEY = "simulated/secret/key"
T = TypeVar("T")


def run(server: SimServer, scenario: Callable[[AsyncAnthropicBedrock], Awaitable[T]]) -> T:
    """`scenario(client)` with a Bedrock client of `server`, signed with a made-up key."""

    async def main() -> T:
        async with AsyncAnthropicBedrock(
            aws_region="us-east-1",
            aws_access_key=ACCESS_KEY,
            aws_secret_key=SECRET_KEY,
            base_url=server.base_url,
            max_retries=0,
        ) as client:
            return await scenario(client)

    return asyncio.run(main())


def invoke(model: str = SONNET_ID, text: str = "hello") -> Callable[[AsyncAnthropicBedrock], Awaitable[Any]]:
    async def scenario(client: AsyncAnthropicBedrock) -> Any:
        return await client.messages.with_raw_response.create(
            model=model, max_tokens=100, messages=user(text)
        )

    return scenario


@pytest.mark.parametrize(
    ("model_id", "model"),
    [
        ("anthropic.claude-sonnet-4-6-v1:0", "claude-sonnet-4-6"),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
        ("global.anthropic.claude-opus-4-6-v1", "claude-opus-4-6"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-sonnet-4-5-v1:0",
            "claude-sonnet-4-5",
        ),
        ("anthropic.claude-unknown-9-v1:0", None),
        ("claude-sonnet-4-6", None),  # the Anthropic API's id is not a Bedrock id
        ("meta.llama3-70b-instruct-v1:0", None),
    ],
)
def test_bedrock_model_ids(model_id: str, model: str | None) -> None:
    assert bedrock_model(model_id) == model


def test_invoke_answers_and_is_counted(sim_factory: SimFactory) -> None:
    server = sim_factory()
    raw = run(server, invoke())
    assert raw.http_request.url.path == f"/model/{SONNET_ID}/invoke"
    sent = json.loads(raw.http_request.content)
    assert "model" not in sent and "stream" not in sent and sent["anthropic_version"]
    assert raw.http_request.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
    message = json.loads(raw.http_response.content)
    assert message["model"] == "claude-sonnet-4-6"
    assert message["content"][0]["text"].startswith("sim:")
    usage = message["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert raw.headers["x-amzn-bedrock-output-token-count"] == str(usage["output_tokens"])
    stats = server.stats()
    assert (stats["requests"], stats["successes"], stats["output_tokens"]) == (1, 1, usage["output_tokens"])
    assert stats["by_model"]["claude-sonnet-4-6"]["successes"] == 1


@pytest.mark.usefixtures("sim_clock")
def test_throttling_is_the_sdks_rate_limit_error(sim_factory: SimFactory) -> None:
    server = sim_factory(rpm=60, burst=1)

    async def scenario(client: AsyncAnthropicBedrock) -> tuple[Any, anthropic.RateLimitError]:
        first = await invoke(text="a")(client)
        with pytest.raises(anthropic.RateLimitError) as caught:
            await invoke(text="b")(client)
        return first, caught.value

    first, error = run(server, scenario)
    assert not [h for h in first.headers if h.lower().startswith("anthropic-ratelimit-")]
    assert error.status_code == 429
    assert error.response.headers["x-amzn-errortype"].split(":")[0] == "ThrottlingException"
    assert error.body == {"message": "Too many requests, please wait before trying again."}
    assert "retry-after" not in error.response.headers
    assert not [h for h in error.response.headers if h.lower().startswith("anthropic-ratelimit-")]
    assert server.stats()["rate_limited"] == 1


@pytest.mark.usefixtures("sim_clock")
def test_one_bucket_for_both_routes(sim_factory: SimFactory, client_for: ClientFor) -> None:
    server = sim_factory(rpm=60, burst=1)
    create(client_for(server), model="claude-sonnet-4-6")  # the Anthropic route takes the one slot
    with pytest.raises(anthropic.RateLimitError):
        run(server, invoke())


def test_latency_is_the_simulators(sim_factory: SimFactory, sim_sleeps: SimSleeps) -> None:
    server = sim_factory()
    run(server, invoke(text="@sim{latency_ms=250}"))
    assert sim_sleeps.delays == [0.25]  # through the simulator's one sleep, which the test stands in for


def test_unknown_model_is_a_validation_error(sim_factory: SimFactory) -> None:
    server = sim_factory()
    with pytest.raises(anthropic.BadRequestError) as caught:
        run(server, invoke(model="us.anthropic.claude-unknown-9-v1:0"))
    assert caught.value.body == {"message": "The provided model identifier is invalid."}
    assert caught.value.response.headers["x-amzn-errortype"].startswith("ValidationException")
    assert server.stats()["successes"] == 0


def test_inference_profile_arn_in_the_path(sim_factory: SimFactory) -> None:
    server = sim_factory()
    arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{SONNET_ID}"
    raw = run(server, invoke(model=arn))
    assert json.loads(raw.http_response.content)["model"] == "claude-sonnet-4-6"


def test_overloaded_is_service_unavailable(sim_factory: SimFactory) -> None:
    server = sim_factory()
    with pytest.raises(anthropic.ServiceUnavailableError) as caught:
        run(server, invoke(text="@sim{status=529}"))
    assert caught.value.response.headers["x-amzn-errortype"].startswith("ServiceUnavailableException")
    assert server.stats()["by_status"] == {"503": 1}


def test_missing_authorization_is_refused(sim_factory: SimFactory) -> None:
    server = sim_factory()
    url = f"{server.base_url}/model/{SONNET_ID}/invoke"
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": user("hi")}
    status, headers, answer = raw_post(url, body, {})
    assert status == 403
    assert headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException")
    assert json.loads(answer) == {"message": "Missing Authentication Token"}
    assert raw_post(url, body, {"authorization": "Bearer bedrock-api-key"})[0] == 200


def test_credentials_are_not_echoed(sim_factory: SimFactory) -> None:
    server = sim_factory()
    with pytest.raises(anthropic.BadRequestError) as caught:
        run(server, invoke(model="anthropic.claude-unknown-9-v1:0"))
    response = caught.value.response
    shown = response.text + json.dumps(dict(response.headers)) + json.dumps(server.stats())
    assert ACCESS_KEY not in shown and SECRET_KEY not in shown


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"anthropic_version": None}, "required key [anthropic_version]"),
        ({"model": "claude-sonnet-4-6"}, "extraneous key [model]"),
        ({"stream": False}, "extraneous key [stream]"),
    ],
)
def test_body_in_bedrocks_shape(sim_factory: SimFactory, change: dict[str, Any], problem: str) -> None:
    server = sim_factory()
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": user("hi"), **change}
    body = {k: v for k, v in body.items() if v is not None}
    status, headers, answer = raw_post(
        f"{server.base_url}/model/{SONNET_ID}/invoke", body, {"authorization": "x"}
    )
    assert status == 400 and headers["x-amzn-errortype"].startswith("ValidationException")
    assert problem in json.loads(answer)["message"]


def test_stream_in_event_stream_framing(sim_factory: SimFactory) -> None:
    server = sim_factory()

    async def scenario(client: AsyncAnthropicBedrock) -> tuple[list[str], Any]:
        async with client.messages.stream(model=SONNET_ID, max_tokens=100, messages=user("hi")) as stream:
            types = [event.type async for event in stream]
            return types, await stream.get_final_message()

    types, final = run(server, scenario)
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert final.content[0].text.startswith("sim:")
    stats = server.stats()
    assert (stats["successes"], stats["output_tokens"]) == (1, final.usage.output_tokens)


def test_stream_frames_decode_with_botocore(sim_factory: SimFactory) -> None:
    server = sim_factory()
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": user("hi")}
    url = f"{server.base_url}/model/{SONNET_ID}/invoke-with-response-stream"
    status, headers, raw = raw_post(url, body, {"authorization": "x"})
    assert status == 200 and headers["content-type"] == "application/vnd.amazon.eventstream"
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    events = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in buffer]
    assert [e["type"] for e in events][-2:] == ["message_delta", "message_stop"]
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] == events[-2]["usage"]["output_tokens"]


def test_stream_failing_midway(sim_factory: SimFactory) -> None:
    server = sim_factory()

    async def scenario(client: AsyncAnthropicBedrock) -> None:
        stream = await client.messages.create(
            model=SONNET_ID, max_tokens=100, messages=user("@sim{stream_error=1}"), stream=True
        )
        async for _ in stream:
            pass

    with pytest.raises(anthropic.APIStatusError, match="modelStreamErrorException"):
        run(server, scenario)
    assert server.stats()["stream_errors"] == 1
