"""`anvil run --simulate`: the embedded simulated API a run's calls go to instead of a provider
(no key, no cost), and the settings it needs (a Message Batch ends in about a second)."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.settings import Settings

SIM_API_KEY = "sk-ant-simulated-local-key"
# What the simulator accepts from each provider's client: any value, as long as it is sent
SIM_BEDROCK_API_KEY = "ABSKsimulated-bedrock-api-key"  # a Bedrock API key: Authorization: Bearer
SIM_VERTEX_TOKEN = "ya29.simulated-access-token"  # a Google access token: Authorization: Bearer
SIM_REGIONS = {"bedrock": "us-east-1", "vertex": "us-east5"}  # where an endpoint names none
SIM_PROJECT = "anvil-simulated"
SIM_POLL_INTERVAL_S = 1.0  # `--mode batches --simulate`: the embedded simulator answers in ~1 s


def simulated_poll(settings: Settings, simulate: bool) -> Settings:
    """Against the embedded simulator (which ends a Message Batch in about a second), poll every
    `SIM_POLL_INTERVAL_S` rather than the real API's 30 s, unless the user set an interval."""
    if not simulate or "poll_interval_s" in settings.batches.model_fields_set:
        return settings
    batches = settings.batches.model_copy(update={"poll_interval_s": SIM_POLL_INTERVAL_S})
    return settings.model_copy(update={"batches": batches})


def simulated_endpoints(endpoints: tuple[Endpoint, ...], base_url: str) -> tuple[Endpoint, ...]:
    """The run's endpoints, each calling the embedded simulator at `base_url` instead: a named
    one its own simulated endpoint (`/e/{name}`, Foundry's under `/anthropic` as its real
    address is), with the credential its provider's client sends and the simulator accepts; the
    implicit one (no `endpoints:`) the unprefixed routes, with its credential."""
    return tuple(_simulated(endpoint, base_url) for endpoint in endpoints)


def _simulated(endpoint: Endpoint, base_url: str) -> Endpoint:
    if not endpoint.name:
        return endpoint.at(base_url, "the embedded simulator")
    url = f"{base_url.rstrip('/')}/e/{endpoint.name}"
    provider = endpoint.provider
    if provider == "foundry":
        url += "/anthropic"
    key = SIM_BEDROCK_API_KEY if provider == "bedrock" else None if provider == "vertex" else SIM_API_KEY
    return replace(
        endpoint.at(url, "the embedded simulator"),
        api_key=key,
        auth_token=SIM_VERTEX_TOKEN if provider == "vertex" else None,
        aws_credentials=None,
        region=endpoint.region or SIM_REGIONS.get(provider),
        project_id=endpoint.project_id or (SIM_PROJECT if provider == "vertex" else None),
    )


def start_simulator(settings: Settings, stack: ExitStack) -> str:
    """The embedded simulator in a process of its own, stopped with `stack`; its base URL."""
    from anvil_cli.sim import SimServer
    from anvil_cli.sim.embedded import embedded_config

    server = SimServer(embedded_config(settings)).start_process()
    stack.callback(server.stop)
    return server.base_url
