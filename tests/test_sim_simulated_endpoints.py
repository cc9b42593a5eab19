"""`anvil run --simulate` with `endpoints:`: the embedded simulator serves one simulated endpoint
per entry with that entry's limits, and `simulated_endpoints` points each run endpoint at its own,
with the credential its provider's SDK client sends. Each is called here with that SDK client,
built from the `Endpoint`'s fields alone, over real HTTP."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import anthropic
import pytest

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.settings import Settings, rate_limit_entry
from anvil_cli.session.simulated import SIM_API_KEY, simulated_endpoints
from anvil_cli.sim import SimServer
from anvil_cli.sim.config import EndpointSim, SharedSim
from anvil_cli.sim.embedded import embedded_config
from tests.sim_fixtures import HAIKU, user

ENDPOINTS: list[dict[str, Any]] = [
    {
        "name": "org-a",
        "rate_limits": {"default": {"requests_per_minute": 600, "burst_size": 20}},
    },
    {
        "name": "aws",
        "provider": "bedrock",
        "region": "us-east-1",
        "rate_limits": {
            "default": {"requests_per_minute": 100},
            "claude-sonnet-*": {
                "requests_per_minute": 300,
                "burst_size": 20,
                "input_tokens_per_minute": 90_000,
            },
        },
    },
    {"name": "gcp", "provider": "vertex", "region": "us-east5", "project_id": "my-project"},
    {"name": "azure", "provider": "foundry", "resource": "my-resource"},
]
MODEL_IDS = {
    "anthropic": HAIKU,
    "foundry": HAIKU,
    "bedrock": "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    "vertex": "claude-haiku-4-5@20251001",
}


def settings_with(tmp_path: Path, **extra: Any) -> Settings:
    return Settings.model_validate({"state_dir": str(tmp_path), **extra})


def as_run_has_them(settings: Settings) -> tuple[Endpoint, ...]:
    """The run's endpoints under --simulate as config resolution makes them: each entry's name,
    provider, region and project, some real address, the simulator's key."""
    return tuple(
        Endpoint(
            f"https://{entry.name}.example.com",
            "default",
            api_key=SIM_API_KEY,
            name=entry.name,
            provider=entry.provider,
            region=entry.region,
            project_id=entry.project_id,
        )
        for entry in settings.endpoints
    )


def test_embedded_config_has_one_endpoint_per_entry_with_its_limits(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, endpoints=ENDPOINTS)
    config = embedded_config(settings)
    assert config.endpoints == {
        "org-a": EndpointSim(rpm=600, burst=20, provider="anthropic"),
        "aws": EndpointSim(rpm=300, burst=20, itpm=90_000, provider="bedrock"),  # the Sonnet pool's
        "gcp": EndpointSim(rpm=300, burst=50, provider="vertex"),  # the defaults of rate_limits
        "azure": EndpointSim(rpm=300, burst=50, provider="foundry"),
    }
    assert (config.rpm, config.burst) == (300, 50)  # the unprefixed routes: the top-level limits


def test_embedded_config_simulates_shared_limits(tmp_path: Path) -> None:
    shared = {
        "org": {"endpoints": ["org-a", "azure"], "rate_limits": {"default": {"requests_per_minute": 900}}}
    }
    config = embedded_config(settings_with(tmp_path, endpoints=ENDPOINTS, shared_limits=shared))
    assert config.shared == {"org": SharedSim(endpoints=("org-a", "azure"), rpm=900, burst=50)}


def test_embedded_config_without_endpoints_is_unchanged(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, rate_limits={"default": {"requests_per_minute": 120, "burst_size": 5}})
    config = embedded_config(settings)
    assert config.endpoints == {}
    assert (config.rpm, config.burst, config.itpm, config.otpm) == (120, 5, None, None)
    assert (config.latency_ms, config.seed) == (400.0, 7)
    assert config.batch_dir == str(tmp_path / "sim-batches")


def test_limit_lookup_is_exact_then_glob_then_default(tmp_path: Path) -> None:
    entry = settings_with(tmp_path, endpoints=ENDPOINTS).endpoints[1]
    assert rate_limit_entry(entry.rate_limits, "claude-sonnet-4-6")[1].requests_per_minute == 300
    assert rate_limit_entry(entry.rate_limits, "claude-haiku-4-5")[1].requests_per_minute == 100


def test_simulated_endpoints_point_each_at_its_own(tmp_path: Path) -> None:
    endpoints = simulated_endpoints(
        as_run_has_them(settings_with(tmp_path, endpoints=ENDPOINTS)), "http://sim:1"
    )
    by_name = {e.name: e for e in endpoints}
    assert [e.base_url for e in endpoints] == [
        "http://sim:1/e/org-a",
        "http://sim:1/e/aws",
        "http://sim:1/e/gcp",
        "http://sim:1/e/azure/anthropic",  # as Foundry's real address ends in /anthropic
    ]
    assert {e.base_url_from for e in endpoints} == {"the embedded simulator"}
    assert by_name["org-a"].api_key == by_name["azure"].api_key == SIM_API_KEY
    assert by_name["aws"].api_key and by_name["aws"].aws_credentials is None  # a Bedrock API key
    assert by_name["gcp"].auth_token and by_name["gcp"].api_key is None  # a Google access token
    assert (by_name["gcp"].region, by_name["gcp"].project_id) == ("us-east5", "my-project")


def test_simulated_endpoints_fill_what_the_simulator_needs(tmp_path: Path) -> None:
    bare = (
        Endpoint("https://x", "default", name="b", provider="bedrock", aws_credentials=("AKIA", "s", None)),
        Endpoint("https://y", "default", name="v", provider="vertex"),
    )
    bedrock, vertex = simulated_endpoints(bare, "http://sim:1")
    assert bedrock.region == "us-east-1" and bedrock.aws_credentials is None and bedrock.api_key
    assert (vertex.region, vertex.project_id) == ("us-east5", "anvil-simulated") and vertex.auth_token


def test_the_implicit_endpoint_keeps_the_unprefixed_routes() -> None:
    implicit = Endpoint("http://127.0.0.1", "the embedded simulator", api_key=SIM_API_KEY)
    (simulated,) = simulated_endpoints((implicit,), "http://sim:1")
    assert simulated == replace(implicit, base_url="http://sim:1")


def sdk_client(endpoint: Endpoint) -> Any:
    """The provider's SDK client built from the endpoint's fields, as a worker builds it."""
    common: dict[str, Any] = {"base_url": endpoint.base_url, "max_retries": 0}
    if endpoint.provider == "bedrock":
        return anthropic.AsyncAnthropicBedrock(api_key=endpoint.api_key, aws_region=endpoint.region, **common)
    if endpoint.provider == "vertex":
        return anthropic.AsyncAnthropicVertex(
            region=endpoint.region or "",
            project_id=endpoint.project_id,
            access_token=endpoint.auth_token,
            **common,
        )
    if endpoint.provider == "foundry":
        return anthropic.AsyncAnthropicFoundry(api_key=endpoint.api_key, **common)
    return anthropic.AsyncAnthropic(**endpoint.client_kwargs(), max_retries=0)


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_every_simulated_endpoint_answers_its_providers_client(tmp_path: Path, mode: str) -> None:
    settings = settings_with(tmp_path, endpoints=ENDPOINTS)
    server = SimServer(embedded_config(settings))
    with server.start_thread() if mode == "thread" else server.start_process():
        endpoints = simulated_endpoints(as_run_has_them(settings), server.base_url)

        async def call(endpoint: Endpoint) -> str:
            async with sdk_client(endpoint) as client:
                message = await client.messages.create(
                    model=MODEL_IDS[endpoint.provider], max_tokens=20, messages=user(f"to {endpoint.name}")
                )
                return str(message.content[0].text)

        async def main() -> list[str]:
            return list(await asyncio.gather(*(call(e) for e in endpoints)))

        texts = asyncio.run(main())
        stats = server.stats()
    assert all(text.startswith("sim:") for text in texts)
    assert {name: s["successes"] for name, s in stats["endpoints"].items()} == {
        "org-a": 1,
        "aws": 1,
        "gcp": 1,
        "azure": 1,
    }
    assert stats["successes"] == 4
