"""The simulator in Google Vertex AI's wire format, driven by the SDK's real `AsyncAnthropicVertex`.

Over real HTTP on 127.0.0.1, with a given access token (no Google credentials are looked up),
without retries. The simulators with limits read `sim_clock`, so a bucket refills only when a
test says so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anthropic
import pytest
from anthropic import AsyncAnthropicVertex

from anvil_cli.sim import SimServer
from anvil_cli.sim.providers.models import vertex_model
from tests.sim_fixtures import (  # noqa: F401
    ClientFor,
    SimFactory,
    create,
    fixture_client_for,
    fixture_sim_clock,
    fixture_sim_factory,
    raw_post,
    user,
)

SONNET_ID = "claude-sonnet-4-6@20250929"
TOKEN = "ya29.simulated-access-token"
PATH = "/projects/p/locations/us-east5/publishers/anthropic/models"
T = TypeVar("T")


def run(
    server: SimServer, scenario: Callable[[AsyncAnthropicVertex], Awaitable[T]], base_path: str = ""
) -> T:
    """`scenario(client)` with a Vertex client of `server` (`base_path`: after its address)."""

    async def main() -> T:
        async with AsyncAnthropicVertex(
            region="us-east5",
            project_id="p",
            access_token=TOKEN,
            base_url=server.base_url + base_path,
            max_retries=0,
        ) as client:
            return await scenario(client)

    return asyncio.run(main())


def predict(model: str = SONNET_ID, text: str = "hello") -> Callable[[AsyncAnthropicVertex], Awaitable[Any]]:
    async def scenario(client: AsyncAnthropicVertex) -> Any:
        return await client.messages.with_raw_response.create(
            model=model, max_tokens=100, messages=user(text)
        )

    return scenario


@pytest.mark.parametrize(
    ("model_id", "model"),
    [
        ("claude-sonnet-4-6@20250929", "claude-sonnet-4-6"),
        ("claude-sonnet-4-6", "claude-sonnet-4-6"),
        ("claude-haiku-4-5@20251001", "claude-haiku-4-5"),
        ("claude-opus-4-1@20250805", "claude-opus-4-1"),
        ("claude-unknown-9@20250101", None),
        ("anthropic.claude-sonnet-4-6-v1:0", None),  # a Bedrock id is not a Vertex id
        ("gemini-2.5-pro", None),
    ],
)
def test_vertex_model_ids(model_id: str, model: str | None) -> None:
    assert vertex_model(model_id) == model


@pytest.mark.parametrize("base_path", ["", "/v1"])
def test_raw_predict_answers_and_is_counted(sim_factory: SimFactory, base_path: str) -> None:
    server = sim_factory()
    raw = run(server, predict(), base_path)
    assert raw.http_request.url.path == f"{base_path}{PATH}/{SONNET_ID}:rawPredict"
    assert raw.http_request.headers["authorization"] == f"Bearer {TOKEN}"
    sent = json.loads(raw.http_request.content)
    assert "model" not in sent and sent["anthropic_version"]
    message = json.loads(raw.http_response.content)
    assert message["model"] == "claude-sonnet-4-6"
    assert message["content"][0]["text"].startswith("sim:")
    usage = message["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    stats = server.stats()
    assert (stats["requests"], stats["successes"], stats["output_tokens"]) == (1, 1, usage["output_tokens"])
    assert stats["by_model"]["claude-sonnet-4-6"]["successes"] == 1


@pytest.mark.usefixtures("sim_clock")
def test_quota_exhausted_is_the_sdks_rate_limit_error(sim_factory: SimFactory) -> None:
    server = sim_factory(rpm=60, burst=1)

    async def scenario(client: AsyncAnthropicVertex) -> tuple[Any, anthropic.RateLimitError]:
        first = await predict(text="a")(client)
        with pytest.raises(anthropic.RateLimitError) as caught:
            await predict(text="b")(client)
        return first, caught.value

    first, error = run(server, scenario)
    assert not [h for h in first.headers if h.lower().startswith("anthropic-ratelimit-")]
    assert error.status_code == 429
    assert isinstance(error.body, dict)
    assert (error.body["error"]["code"], error.body["error"]["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert "retry-after" not in error.response.headers
    assert not [h for h in error.response.headers if h.lower().startswith("anthropic-ratelimit-")]
    assert server.stats()["rate_limited"] == 1


@pytest.mark.usefixtures("sim_clock")
def test_one_bucket_for_both_routes(sim_factory: SimFactory, client_for: ClientFor) -> None:
    server = sim_factory(rpm=60, burst=1)
    create(client_for(server), model="claude-sonnet-4-6")  # the Anthropic route takes the one slot
    with pytest.raises(anthropic.RateLimitError):
        run(server, predict())


def test_unknown_model_is_not_found(sim_factory: SimFactory) -> None:
    server = sim_factory()
    with pytest.raises(anthropic.NotFoundError) as caught:
        run(server, predict(model="claude-unknown-9@20250101"))
    assert isinstance(caught.value.body, dict)
    error = caught.value.body["error"]
    assert (error["code"], error["status"]) == (404, "NOT_FOUND")
    assert "publishers/anthropic/models/claude-unknown-9@20250101" in error["message"]
    assert server.stats()["successes"] == 0


def test_the_models_errors_pass_through(sim_factory: SimFactory) -> None:
    server = sim_factory()
    with pytest.raises(anthropic.OverloadedError) as caught:
        run(server, predict(text="@sim{status=529}"))
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_missing_token_is_refused(sim_factory: SimFactory) -> None:
    server = sim_factory()
    url = f"{server.base_url}{PATH}/{SONNET_ID}:rawPredict"
    body = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 10, "messages": user("hi")}
    for headers in ({}, {"authorization": "Bearer "}, {"x-api-key": "k"}):
        status, _, answer = raw_post(url, body, headers)
        assert status == 401
        assert json.loads(answer)["error"]["status"] == "UNAUTHENTICATED"
    assert raw_post(url, body, {"authorization": "Bearer t"})[0] == 200


def test_token_is_not_echoed(sim_factory: SimFactory) -> None:
    server = sim_factory()
    with pytest.raises(anthropic.NotFoundError) as caught:
        run(server, predict(model="claude-unknown-9"))
    response = caught.value.response
    shown = response.text + json.dumps(dict(response.headers)) + json.dumps(server.stats())
    assert TOKEN not in shown


def test_anthropic_version_is_required(sim_factory: SimFactory) -> None:
    server = sim_factory()
    url = f"{server.base_url}{PATH}/{SONNET_ID}:rawPredict"
    status, _, answer = raw_post(
        url, {"max_tokens": 10, "messages": user("hi")}, {"authorization": "Bearer t"}
    )
    assert status == 400 and "anthropic_version" in json.loads(answer)["error"]["message"]


def test_stream_raw_predict(sim_factory: SimFactory) -> None:
    server = sim_factory()

    async def scenario(client: AsyncAnthropicVertex) -> tuple[list[str], Any, str]:
        async with client.messages.stream(model=SONNET_ID, max_tokens=100, messages=user("hi")) as stream:
            types = [event.type async for event in stream]
            return types, await stream.get_final_message(), stream.response.url.path

    types, final, path = run(server, scenario)
    assert path == f"{PATH}/{SONNET_ID}:streamRawPredict"
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert final.content[0].text.startswith("sim:")
    stats = server.stats()
    assert (stats["successes"], stats["output_tokens"]) == (1, final.usage.output_tokens)


def test_count_tokens(sim_factory: SimFactory) -> None:
    server = sim_factory()

    async def scenario(client: AsyncAnthropicVertex) -> int:
        counted = await client.messages.count_tokens(model=SONNET_ID, messages=user("@sim{input_tokens=321}"))
        return counted.input_tokens

    assert run(server, scenario) == 321
    assert server.stats()["requests"] == 0  # counting is not a Messages call
