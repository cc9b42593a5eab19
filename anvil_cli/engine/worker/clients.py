"""One SDK client per endpoint, each as its provider wants it: the Anthropic API
(`AsyncAnthropic`), Amazon Bedrock (`AsyncAnthropicBedrock`), Google Vertex AI
(`AsyncAnthropicVertex`), Microsoft Foundry (`AsyncAnthropicFoundry`).

Every client is built from its `Endpoint` alone: address, region, project, credential and
headers are all passed, so none of the SDK's fallbacks to this process's environment applies (a
Ray node's ANTHROPIC_BASE_URL, AWS_REGION, AWS_PROFILE, AWS_BEARER_TOKEN_BEDROCK,
ANTHROPIC_VERTEX_PROJECT_ID, ANTHROPIC_FOUNDRY_API_KEY... are not the driver's). The one
exception is deliberate: a Bedrock endpoint without a key, or a Vertex one without a token,
uses the worker's own AWS or Google credential chain. All run on the SDK's aiohttp transport
(one connection pool per endpoint, sized to the agents) with the SDK's retries off: tenacity
owns retries.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2

from anvil_cli.config.endpoint import DEFAULT_BASE_URL, Endpoint
from anvil_cli.config.provider_models import provider_model_id
from anvil_cli.config.providers import default_base_url, missing_extra
from anvil_cli.errors import UsageError
from anvil_cli.policy.pricing.pricer import Pricer

CONNECT_TIMEOUT_S = 5.0
# Anvil traces its calls itself (telemetry.py): the SDK's own spans stay off, and so does the work
# of making a span no one records on every call (an SDK without the option makes none)
_NO_SDK_SPANS: dict[str, Any] = (
    {"open_telemetry": False}
    if "open_telemetry" in inspect.signature(anthropic.AsyncAnthropic.__init__).parameters
    else {}
)


# Foundry's client is an AsyncAnthropic; each has `messages` and `close()`.
ProviderClient = anthropic.AsyncAnthropic | anthropic.AsyncAnthropicBedrock | anthropic.AsyncAnthropicVertex


@dataclass(frozen=True)
class EndpointClient:
    """One endpoint as a worker calls it: its client, and the prices its calls are paid at."""

    endpoint: Endpoint
    client: ProviderClient
    pricer: Pricer

    @property
    def name(self) -> str | None:
        """The endpoint's name as attempts and results record it (None: the run's only endpoint)."""
        return self.endpoint.name or None

    def model_id(self, model: str) -> str:
        """The id to send for Anvil's `model`: the endpoint's `models:` mapping, else the
        provider's standard id, else Anvil's own."""
        mapped = dict(self.endpoint.models).get(model)
        if mapped:
            return mapped
        ep = self.endpoint
        return provider_model_id(ep.provider, model, ep.region) or model


class MissingExtra(UsageError):
    """A provider's client needs a package that is not installed."""


def check_endpoint(endpoint: Endpoint) -> None:
    """Raise UsageError when no client can be made for `endpoint` (an unknown provider, a
    package its client needs, a region, a project, a key): what the driver can check before any
    worker starts, as `make_client` checks it in each worker."""
    if endpoint.provider not in _MAKERS:
        raise UsageError(f"endpoint {endpoint.name!r}: unknown provider {endpoint.provider!r}")
    # checked again here, not only in the driver: a Ray node may lack what the driver has
    extra = missing_extra(endpoint.provider, bool(endpoint.auth_token or endpoint.api_key))
    if extra is not None:
        raise MissingExtra(f"endpoint {endpoint.name!r} ({endpoint.provider}): {extra}")
    if endpoint.provider in ("bedrock", "vertex"):
        _require(endpoint, endpoint.region, "region")
    if (
        endpoint.provider == "vertex"
        and (endpoint.auth_token or endpoint.api_key)
        and not endpoint.project_id
    ):
        # only Google credentials found by google-auth name their project
        raise UsageError(f"endpoint {endpoint.name!r} (vertex) has an access token but no project_id")
    if endpoint.provider == "foundry":
        _require(endpoint, endpoint.api_key, "API key")


def make_client(endpoint: Endpoint, timeout_s: float, max_connections: int) -> ProviderClient:
    """The SDK's async client for `endpoint`'s provider (see the module docstring)."""
    check_endpoint(endpoint)
    maker = _MAKERS[endpoint.provider]
    http_client = anthropic.DefaultAioHttpClient(
        limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        timeout=httpx2.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
    )
    common: dict[str, Any] = {
        "max_retries": 0,
        "timeout": timeout_s,
        "http_client": http_client,
        **_NO_SDK_SPANS,
    }
    client = maker(endpoint, common)
    # The SDK merges this process's ANTHROPIC_CUSTOM_HEADERS into any headers given: the
    # driver's (in the endpoint) are the only ones that apply.
    client._custom_headers = dict(endpoint.headers)
    return client


def make_clients(
    endpoints: Iterable[Endpoint], timeout_s: float, max_connections: int, pricer: Pricer
) -> dict[str, EndpointClient]:
    """{endpoint name: its client} for every endpoint of the run, in their order."""
    out: dict[str, EndpointClient] = {}
    for endpoint in endpoints:
        client = make_client(endpoint, timeout_s, max_connections)
        out[endpoint.name] = EndpointClient(endpoint, client, priced_at(pricer, endpoint))
    return out


def priced_at(pricer: Pricer, endpoint: Endpoint) -> Pricer:
    """The prices of `endpoint`'s provider and region (the run's prices where the Pricer has no
    per-provider table)."""
    at = getattr(pricer, "at", None)
    return at(endpoint.provider, endpoint.region) if callable(at) else pricer


def _base_url(endpoint: Endpoint) -> str:
    """The endpoint's address; for a provider other than Anthropic's API given none, the
    provider's own default (never api.anthropic.com)."""
    given = endpoint.base_url_from != "default" or endpoint.base_url.rstrip("/") != DEFAULT_BASE_URL
    if endpoint.provider == "anthropic" or given:
        return endpoint.base_url
    return default_base_url(endpoint.provider, endpoint.region, None) or endpoint.base_url


def _require(endpoint: Endpoint, value: str | None, what: str) -> str:
    if not value:
        raise UsageError(f"endpoint {endpoint.name!r} ({endpoint.provider}) has no {what}")
    return value


def _anthropic(endpoint: Endpoint, common: dict[str, Any]) -> ProviderClient:
    return anthropic.AsyncAnthropic(**endpoint.client_kwargs(), **common)


def _foundry(endpoint: Endpoint, common: dict[str, Any]) -> ProviderClient:
    key = _require(endpoint, endpoint.api_key, "API key")
    return anthropic.AsyncAnthropicFoundry(
        api_key=key, base_url=_base_url(endpoint), default_headers=dict(endpoint.headers), **common
    )


def _vertex(endpoint: Endpoint, common: dict[str, Any]) -> ProviderClient:
    client = anthropic.AsyncAnthropicVertex(
        region=_require(endpoint, endpoint.region, "region"),
        access_token=endpoint.auth_token or endpoint.api_key,  # None: the worker's Google credentials
        base_url=_base_url(endpoint),
        default_headers=dict(endpoint.headers),
        **common,
    )
    # None: the project of the Google credentials, never ANTHROPIC_VERTEX_PROJECT_ID's
    client.project_id = endpoint.project_id
    return client


class _Bedrock(anthropic.AsyncAnthropicBedrock):
    """Bedrock signing the driver's AWS keys with botocore directly: boto3's session would read
    this process's AWS_PROFILE and config files even when keys are given."""

    signing_credentials: Any = None  # botocore Credentials; None: a Bedrock API key or the AWS chain

    async def _prepare_request(self, request: httpx2.Request) -> None:
        if self.api_key is not None or self.signing_credentials is None:
            await super()._prepare_request(request)
            return
        from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

        headers = {k: v for k, v in request.headers.items() if k.lower() != "connection"}
        signed = AWSRequest(method=request.method, url=str(request.url), headers=headers, data=request.read())
        SigV4Auth(self.signing_credentials, "bedrock", self.aws_region).add_auth(signed)
        request.headers.update({k: v for k, v in signed.prepare().headers.items() if v is not None})


def _bedrock(endpoint: Endpoint, common: dict[str, Any]) -> ProviderClient:
    # A placeholder key keeps the SDK from reading AWS_BEARER_TOKEN_BEDROCK; the endpoint's
    # own credential is set right after.
    client = _Bedrock(
        api_key="",
        aws_region=_require(endpoint, endpoint.region, "region"),
        base_url=_base_url(endpoint),
        default_headers=dict(endpoint.headers),
        **common,
    )
    client.api_key = endpoint.api_key  # a Bedrock API key (Authorization: Bearer), or SigV4
    if endpoint.api_key is None and endpoint.aws_credentials is not None:
        from botocore.credentials import Credentials  # type: ignore[import-untyped]

        access, secret, token = endpoint.aws_credentials
        client.signing_credentials = Credentials(access, secret, token)
    return client


_MAKERS = {"anthropic": _anthropic, "bedrock": _bedrock, "vertex": _vertex, "foundry": _foundry}
