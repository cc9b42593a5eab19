"""The simulator in Microsoft Foundry's wire format, driven by the SDK's real `AsyncAnthropicFoundry`.

Over real HTTP on 127.0.0.1, with a made-up key (or an Entra ID token provider), without
retries. The simulators with limits read `sim_clock`, so a bucket refills only when a test says so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anthropic
import pytest
from anthropic import AsyncAnthropicFoundry

from anvil_cli.sim import SimServer
from anvil_cli.sim.config import EndpointSim
from tests.sim_fixtures import (  # noqa: F401
    HAIKU,
    SimFactory,
    fixture_sim_clock,
    fixture_sim_factory,
    raw_post,
    user,
)

KEY = "simulated-foundry-key"
T = TypeVar("T")


def run(base_url: str, scenario: Callable[[AsyncAnthropicFoundry], Awaitable[T]], **credential: Any) -> T:
    """`scenario(client)` with a Foundry client whose resource address is `base_url`."""

    async def main() -> T:
        async with AsyncAnthropicFoundry(
            base_url=base_url, max_retries=0, **(credential or {"api_key": KEY})
        ) as client:
            return await scenario(client)

    return asyncio.run(main())


def create(text: str = "hello") -> Callable[[AsyncAnthropicFoundry], Awaitable[tuple[Any, Any]]]:
    """A small request: (the answer's headers, the message)."""

    async def scenario(client: AsyncAnthropicFoundry) -> tuple[Any, Any]:
        params: dict[str, Any] = {"model": HAIKU, "max_tokens": 100, "messages": user(text)}
        raw = await client.messages.with_raw_response.create(**params)
        return raw.headers, await raw.parse()

    return scenario


def foundry_url(sim: SimServer) -> str:
    return sim.base_url + "/anthropic"


def test_round_trip_with_a_key(sim_factory: SimFactory) -> None:
    sim = sim_factory()
    headers, message = run(foundry_url(sim), create("hi"))
    assert message.content[0].text.startswith("sim:") and message.usage.output_tokens == 50
    assert headers["apim-request-id"] and headers["request-id"].startswith("req_sim")
    assert sim.stats()["by_model"][HAIKU]["successes"] == 1


def test_round_trip_with_an_entra_id_token(sim_factory: SimFactory) -> None:
    sim = sim_factory()
    _, message = run(foundry_url(sim), create(), azure_ad_token_provider=lambda: "entra-id-token")
    assert message.stop_reason == "end_turn"


def test_streaming(sim_factory: SimFactory) -> None:
    sim = sim_factory()

    async def scenario(client: AsyncAnthropicFoundry) -> Any:
        async with client.messages.stream(model=HAIKU, max_tokens=100, messages=user("stream")) as stream:
            return await stream.get_final_message()

    final = run(foundry_url(sim), scenario)
    assert final.content[0].text.startswith("sim:") and final.stop_reason == "end_turn"


def test_count_tokens(sim_factory: SimFactory) -> None:
    sim = sim_factory()

    async def scenario(client: AsyncAnthropicFoundry) -> Any:
        return await client.messages.count_tokens(model=HAIKU, messages=user("@sim{input_tokens=1234}"))

    assert run(foundry_url(sim), scenario).input_tokens == 1234


def test_azure_rate_limit_headers_not_anthropics(sim_factory: SimFactory, sim_clock: Any) -> None:
    sim = sim_factory(rpm=60, burst=2, itpm=50_000)
    headers, _ = run(foundry_url(sim), create())
    assert not [name for name in headers if name.startswith("anthropic-ratelimit")]
    assert headers["x-ratelimit-remaining-requests"] == "1"
    assert headers["x-ratelimit-limit-requests"] == "60"
    assert headers["x-ratelimit-limit-tokens"] == "50000"
    assert "x-ratelimit-remaining-tokens" in headers


def test_rate_limited_is_a_rate_limit_error_with_retry_after(sim_factory: SimFactory, sim_clock: Any) -> None:
    sim = sim_factory(rpm=60, burst=1)

    async def scenario(client: AsyncAnthropicFoundry) -> anthropic.RateLimitError:
        await create("first")(client)
        with pytest.raises(anthropic.RateLimitError) as limited:
            await create("second")(client)
        return limited.value

    error = run(foundry_url(sim), scenario)
    assert error.response.headers["retry-after"] == "1"
    assert error.response.headers["retry-after-ms"] == "1000"
    assert not [name for name in error.response.headers if name.startswith("anthropic-ratelimit")]
    assert sim.stats()["rate_limited"] == 1


def test_directives_and_errors_in_the_anthropic_envelope(sim_factory: SimFactory) -> None:
    sim = sim_factory()

    async def scenario(client: AsyncAnthropicFoundry) -> anthropic.APIStatusError:
        with pytest.raises(anthropic.APIStatusError) as failed:
            await create("@sim{status=529}")(client)
        return failed.value

    error = run(foundry_url(sim), scenario)
    assert isinstance(error, anthropic.OverloadedError)
    assert error.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"api-key": KEY}, 200), ({"x-api-key": KEY}, 200), ({"authorization": "Bearer t"}, 200)],
)
def test_authentication(sim_factory: SimFactory, headers: dict[str, str], status: int) -> None:
    sim = sim_factory()
    body = {"model": HAIKU, "max_tokens": 10, "messages": user("hi")}
    got, answer_headers, data = raw_post(foundry_url(sim) + "/v1/messages", body, headers)
    assert got == status
    if status == 401:  # Azure's gateway refuses, in its shape
        assert json.loads(data)["error"]["code"] == "401" and answer_headers["apim-request-id"]


def test_a_foundry_endpoint_under_its_prefix(sim_factory: SimFactory) -> None:
    sim = sim_factory(endpoints={"azure": EndpointSim(provider="foundry", rpm=60, burst=1)})
    url = sim.endpoint_url("azure") + "/anthropic"
    assert run(url, create())[1].stop_reason == "end_turn"
    stats = sim.stats()["endpoints"]["azure"]
    assert stats["successes"] == 1 and stats["provider"] == "foundry"
    status, _, _ = raw_post(
        sim.endpoint_url("azure") + "/v1/messages",
        {"model": HAIKU, "max_tokens": 10, "messages": user("hi")},
        {"x-api-key": KEY},
    )
    assert status == 404  # a Foundry endpoint does not serve the Anthropic API's own routes
