"""A worker's SDK client per endpoint (anvil_cli/engine/worker/clients.py): each provider's real
client, over real HTTP on 127.0.0.1 against the simulator, goes where its `Endpoint` says and
signs with its credential, whatever this process's environment says."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import pytest

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.provider_models import default_models, provider_model_id
from anvil_cli.config.providers import default_base_url
from anvil_cli.engine.worker.clients import (
    EndpointClient,
    MissingExtra,
    check_endpoint,
    make_client,
    make_clients,
)
from anvil_cli.errors import UsageError
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.sim import SimServer
from anvil_cli.sim.providers.models import bedrock_model, vertex_model
from tests.sim_fixtures import fixture_sim, fixture_sim_factory  # noqa: F401

HAIKU = "claude-haiku-4-5"
KEY = "sk-endpoint-key"
ACCESS_KEY = "AKIAENDPOINTKEYID001"
SECRET_KEY = "endpoint/secret/key"
TOKEN = "ya29.endpoint-token"
BEDROCK_KEY = "bedrock-api-key-of-the-endpoint"


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(name="wrong_env")
def fixture_wrong_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything the SDK's clients would read from a worker's environment, set wrong: a
    closed port for every address, another region, project, profile and credential."""
    closed = closed_url()
    for name in (
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_BEDROCK_BASE_URL",
        "ANTHROPIC_VERTEX_BASE_URL",
        "ANTHROPIC_FOUNDRY_BASE_URL",
    ):
        monkeypatch.setenv(name, closed)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "the-node-s-key")
    monkeypatch.setenv("ANTHROPIC_FOUNDRY_API_KEY", "the-node-s-foundry-key")
    monkeypatch.setenv("ANTHROPIC_FOUNDRY_RESOURCE", "the-node-s-resource")
    monkeypatch.setenv("ANTHROPIC_CUSTOM_HEADERS", "X-Node: yes")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_PROFILE", "the-node-s-profile")  # exists nowhere: boto3 would fail on it
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATHENODESKEY00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-node-s-secret")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "the-node-s-bedrock-key")
    monkeypatch.setenv("CLOUD_ML_REGION", "europe-west4")
    monkeypatch.setenv("ANTHROPIC_VERTEX_PROJECT_ID", "the-node-s-project")


def endpoints(url: str) -> dict[str, Endpoint]:
    driver = (("X-Driver", "yes"),)
    common: dict[str, Any] = {"base_url": url, "base_url_from": "endpoints", "headers": driver}
    return {
        "anthropic": Endpoint(name="a", provider="anthropic", api_key=KEY, **common),
        "bedrock": Endpoint(
            name="b",
            provider="bedrock",
            region="us-east-1",
            aws_credentials=(ACCESS_KEY, SECRET_KEY, None),
            **common,
        ),
        "bedrock-key": Endpoint(
            name="bk", provider="bedrock", region="us-west-2", api_key=BEDROCK_KEY, **common
        ),
        "vertex": Endpoint(
            name="v", provider="vertex", region="us-east5", project_id="proj-1", auth_token=TOKEN, **common
        ),
        "foundry": Endpoint(name="f", provider="foundry", api_key=KEY, **common),
    }


def call(endpoint: Endpoint) -> tuple[Any, Any]:
    """One small request through `make_client(endpoint)`: (the HTTP request sent, the message),
    sent with the id the endpoint's provider knows the model by."""

    async def main() -> tuple[Any, Any]:
        client = make_client(endpoint, 10.0, 2)
        model = EndpointClient(endpoint, client, Pricer.from_overrides()).model_id(HAIKU)
        try:
            raw = await client.messages.with_raw_response.create(
                model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
            )
            return raw.http_request, await raw.parse()
        finally:
            await client.close()

    return asyncio.run(main())


@pytest.mark.usefixtures("wrong_env")
@pytest.mark.parametrize(
    ("kind", "path", "auth"),
    [
        ("anthropic", "/v1/messages", {"authorization": f"Bearer {KEY}"}),  # how SDK 2.x sends a key
        (
            "bedrock",
            "/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke",
            {"authorization": f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/"},
        ),
        (
            "bedrock-key",
            "/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke",
            {"authorization": f"Bearer {BEDROCK_KEY}"},
        ),
        (
            "vertex",
            "/projects/proj-1/locations/us-east5/publishers/anthropic/models/claude-haiku-4-5@20251001:rawPredict",
            {"authorization": f"Bearer {TOKEN}"},
        ),
        ("foundry", "/v1/messages", {"x-api-key": KEY, "api-key": KEY}),
    ],
)
def test_each_provider_s_client_goes_where_its_endpoint_says(
    sim: SimServer, kind: str, path: str, auth: dict[str, str]
) -> None:
    endpoint = endpoints(sim.base_url)[kind]
    request, message = call(endpoint)
    assert str(request.url).startswith(sim.base_url) and request.url.path == path
    for name, value in auth.items():
        assert request.headers[name].startswith(value)
    assert request.headers["x-driver"] == "yes" and "x-node" not in request.headers
    assert message.content[0].text.startswith("sim:")
    stats = sim.stats()
    assert stats["successes"] == 1 and stats["by_model"][HAIKU]["successes"] == 1


@pytest.mark.usefixtures("wrong_env")
def test_bedrock_signs_for_the_endpoint_s_region_not_the_worker_s(sim: SimServer) -> None:
    request, _ = call(endpoints(sim.base_url)["bedrock"])
    credential = request.headers["authorization"].split("Credential=")[1].split(",")[0]
    assert credential.split("/")[2:4] == ["us-east-1", "bedrock"]


def test_bedrock_without_credentials_uses_the_worker_s_aws_chain(
    sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one deliberate exception: no key in the endpoint is the worker's own AWS identity
    (an instance role, say), still signed for the endpoint's region."""
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATHEWORKERSROLE01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-worker-s-secret")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    endpoint = Endpoint(sim.base_url, "endpoints", name="b", provider="bedrock", region="us-west-2")
    request, _ = call(endpoint)
    credential = request.headers["authorization"].split("Credential=")[1].split(",")[0]
    assert credential.startswith("AKIATHEWORKERSROLE01/") and credential.split("/")[2] == "us-west-2"


def test_every_endpoint_gets_its_own_client(sim: SimServer) -> None:
    async def main() -> dict[str, tuple[str, str]]:
        made = make_clients(endpoints(sim.base_url).values(), 10.0, 2, Pricer.from_overrides())
        try:
            return {name: (each.endpoint.provider, type(each.client).__name__) for name, each in made.items()}
        finally:
            for each in made.values():
                await each.client.close()

    assert asyncio.run(main()) == {
        "a": ("anthropic", "AsyncAnthropic"),
        "b": ("bedrock", "_Bedrock"),
        "bk": ("bedrock", "_Bedrock"),
        "v": ("vertex", "AsyncAnthropicVertex"),
        "f": ("foundry", "AsyncAnthropicFoundry"),
    }


@pytest.mark.parametrize(
    ("endpoint", "says"),
    [
        (Endpoint("http://h:1", "t", name="x", provider="openai"), "unknown provider 'openai'"),
        (Endpoint("http://h:1", "t", name="b", provider="bedrock"), "has no region"),
        (
            Endpoint("http://h:1", "t", name="v", provider="vertex", auth_token="t", project_id="p"),
            "has no region",
        ),
        (
            Endpoint("http://h:1", "t", name="v", provider="vertex", auth_token="t", region="r"),
            "no project_id",
        ),
        (Endpoint("http://h:1", "t", name="f", provider="foundry"), "has no API key"),
    ],
)
def test_an_endpoint_a_client_cannot_be_made_for_says_why(endpoint: Endpoint, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        check_endpoint(endpoint)  # in the driver, before any worker starts
    with pytest.raises(UsageError, match=says):
        make_client(endpoint, 10.0, 1)


@pytest.mark.parametrize(
    ("provider", "module", "extra"), [("bedrock", "botocore", "bedrock"), ("vertex", "google.auth", "vertex")]
)
def test_a_missing_extra_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, provider: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    endpoint = Endpoint("http://h:1", "t", name="e", provider=provider, region="us-east-1")
    with pytest.raises(MissingExtra, match=rf"needs {module}: pip install 'anvil-cli\[{extra}\]'"):
        make_client(endpoint, 10.0, 1)


def test_a_provider_given_no_address_calls_its_own_not_the_anthropic_api() -> None:
    async def main(endpoint: Endpoint) -> str:
        client = make_client(endpoint, 10.0, 1)
        try:
            return str(client.base_url)
        finally:
            await client.close()

    unset = {"base_url": "https://api.anthropic.com", "base_url_from": "default"}
    bedrock = Endpoint(**unset, name="b", provider="bedrock", region="eu-west-1", api_key="k")
    vertex = Endpoint(**unset, name="v", provider="vertex", region="us-east5", project_id="p", auth_token="t")
    assert asyncio.run(main(bedrock)).rstrip("/") == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert asyncio.run(main(vertex)).rstrip("/") == "https://us-east5-aiplatform.googleapis.com/v1"


@pytest.mark.parametrize(
    ("provider", "region", "models", "sent"),
    [
        ("anthropic", None, (), HAIKU),
        ("foundry", None, (), HAIKU),
        ("bedrock", "us-east-1", (), "us.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("bedrock", "eu-central-1", (), "eu.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("bedrock", "ap-northeast-1", (), "global.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("bedrock", "sa-east-1", (), "global.anthropic.claude-haiku-4-5-20251001-v1:0"),
        (
            "bedrock",
            "us-east-1",
            ((HAIKU, "arn:aws:bedrock:us-east-1:1:inference-profile/x"),),
            "arn:aws:bedrock:us-east-1:1:inference-profile/x",
        ),
        ("vertex", "us-east5", (), "claude-haiku-4-5@20251001"),
        ("vertex", "us-east5", ((HAIKU, "claude-haiku-4-5@20990101"),), "claude-haiku-4-5@20990101"),
    ],
)
def test_the_model_id_sent_is_the_endpoint_s_mapping_then_the_provider_s(
    provider: str, region: str | None, models: tuple[tuple[str, str], ...], sent: str
) -> None:
    endpoint = Endpoint("http://h:1", "t", name="e", provider=provider, region=region, models=models)
    assert EndpointClient(endpoint, None, Pricer.from_overrides()).model_id(HAIKU) == sent  # type: ignore[arg-type]


def test_a_model_a_provider_does_not_serve_keeps_anvil_s_id() -> None:
    assert provider_model_id("bedrock", "claude-made-up-1") is None
    endpoint = Endpoint("http://h:1", "t", name="e", provider="bedrock", region="us-east-1")
    assert (
        EndpointClient(endpoint, None, Pricer.from_overrides()).model_id("claude-made-up-1")
        == "claude-made-up-1"
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("region", [None, "us-east-1", "eu-west-1", "ap-south-1", "me-central-1"])
def test_the_catalog_s_ids_name_their_models_as_the_providers_parse_them(region: str | None) -> None:
    for model in default_models("bedrock", region):
        assert bedrock_model(provider_model_id("bedrock", model, region) or "") == model
    for model in default_models("vertex", region):
        assert vertex_model(provider_model_id("vertex", model, region) or "") == model


def test_default_addresses_are_the_sdk_s() -> None:
    assert default_base_url("bedrock", "us-east-1", None) == "https://bedrock-runtime.us-east-1.amazonaws.com"
    assert default_base_url("vertex", "global", None) == "https://aiplatform.googleapis.com/v1"
    assert default_base_url("vertex", "eu", None) == "https://aiplatform.eu.rep.googleapis.com/v1"
    assert default_base_url("foundry", None, "r") == "https://r.services.ai.azure.com/anthropic/"
    assert default_base_url("bedrock", None, None) is None and default_base_url("vertex", None, None) is None


def test_vertex_given_a_token_needs_no_google_auth(monkeypatch: pytest.MonkeyPatch, sim: SimServer) -> None:
    monkeypatch.setitem(sys.modules, "google.auth", None)  # as if not installed
    _, message = call(endpoints(sim.base_url)["vertex"])
    assert message.content[0].text.startswith("sim:")
