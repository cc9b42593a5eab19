"""Settings of the simulated API, and the published rate-limit tiers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_PORT = 8765  # the CLI's default; embedded servers use port 0 (a free port)


@dataclass(frozen=True, slots=True)
class Tier:
    """Published per-model-class limits of one usage tier (Haiku 4.5 figures)."""

    rpm: float
    itpm: float
    otpm: float


TIERS: dict[str, Tier] = {
    "1": Tier(rpm=50, itpm=50_000, otpm=10_000),
    "2": Tier(rpm=1_000, itpm=450_000, otpm=90_000),
    "3": Tier(rpm=2_000, itpm=1_000_000, otpm=200_000),
    "4": Tier(rpm=4_000, itpm=4_000_000, otpm=800_000),
    "start": Tier(rpm=1_000, itpm=2_000_000, otpm=400_000),
    "build": Tier(rpm=5_000, itpm=5_000_000, otpm=1_000_000),
    "scale": Tier(rpm=10_000, itpm=10_000_000, otpm=2_000_000),
}


PROVIDERS = ("anthropic", "bedrock", "vertex", "foundry")
ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as `endpoints:` names are


@dataclass(frozen=True, slots=True)
class EndpointSim:
    """One simulated endpoint (an account, a region, a deployment) served under `/e/{name}/`:
    its own limits, prompt cache, stats and off switch; answers, faults and latency are the
    simulator's. `provider` None serves every wire format there, else only that one's routes."""

    rpm: float | None = None  # requests per minute per model class; None = unlimited
    itpm: float | None = None
    otpm: float | None = None
    burst: int | None = None  # request bucket capacity; None -> one second's worth (min 1)
    provider: str | None = None  # anthropic | bedrock | vertex | foundry | None (all)
    off_after_s: float | None = None  # goes off this long after the simulator starts
    off_for_s: float | None = None  # ... and back on after this long (None: stays off)


@dataclass(frozen=True, slots=True)
class SharedSim:
    """A ceiling several simulated endpoints draw from as well as from their own limits (the
    keys of one organisation share its limits); buckets per model class, as everywhere."""

    endpoints: tuple[str, ...]
    rpm: float | None = None
    itpm: float | None = None
    otpm: float | None = None
    burst: int | None = None


@dataclass(slots=True)
class SimConfig:
    """Everything that shapes the simulator's behaviour. Rates are probabilities in [0, 1]."""

    host: str = "127.0.0.1"
    port: int = 0
    rpm: float | None = None  # requests per minute per model class; None = unlimited
    itpm: float | None = None  # input tokens per minute per model class; None = unlimited
    otpm: float | None = None  # output tokens per minute per model class; None = unlimited
    burst: int | None = None  # request bucket capacity; None -> one second's worth (min 1)
    latency_ms: float = 0.0  # median latency of a successful answer
    latency_spread: float = 0.0  # lognormal sigma of the latency
    ms_per_output_token: float = 0.0  # extra latency per generated token
    output_tokens: int = 50  # mean output tokens of a text answer
    output_tokens_spread: float = 0.0  # lognormal sigma of the output tokens
    overloaded_rate: float = 0.0  # 529 overloaded_error
    error_rate: float = 0.0  # 500 api_error
    drop_rate: float = 0.0  # connection closed without a response
    slow_rate: float = 0.0  # answer takes slow_ms longer
    slow_ms: float = 0.0
    seed: int = 0
    invalid_rate: float = 0.0  # share of conversations whose first answer is invalid for its schema
    batch_seconds_per_request: float = 0.01  # compressed clock of Message Batches
    batch_api_fail_first: int = 0  # the first N GETs of the batch endpoints answer 529 overloaded_error
    batch_dir: str | None = None  # keep Message Batches here (and reload them at start); None = memory
    require_auth: bool = True
    cache_ttl_s: float = 300.0  # TTL of a "5m" cache entry ("1h" entries live 3600 s)
    endpoints: dict[str, EndpointSim] = field(default_factory=dict)  # served under /e/{name}/
    shared: dict[str, SharedSim] = field(default_factory=dict)  # ceilings over several endpoints

    @property
    def request_capacity(self) -> float | None:
        """Capacity of the request bucket, or None when requests are unlimited."""
        if self.rpm is None:
            return None
        if self.burst is not None:
            return float(max(1, self.burst))
        return max(1.0, self.rpm / 60.0)


def endpoint_config(config: SimConfig, name: str) -> SimConfig:
    """The simulator's settings as its endpoint `name` sees them: that endpoint's limits, and
    its Message Batches in a directory of their own (`<batch_dir>/endpoints/<name>/`)."""
    endpoint = config.endpoints[name]
    batch_dir = str(Path(config.batch_dir) / "endpoints" / name) if config.batch_dir else None
    return replace(
        config,
        endpoints={},
        shared={},
        rpm=endpoint.rpm,
        itpm=endpoint.itpm,
        otpm=endpoint.otpm,
        burst=endpoint.burst,
        batch_dir=batch_dir,
    )


def check_endpoints(config: SimConfig) -> None:
    """ValueError when an endpoint's name cannot be a path segment or its provider is unknown."""
    for name, endpoint in config.endpoints.items():
        if not ENDPOINT_NAME.match(name):
            raise ValueError(f"simulated endpoint name {name!r}: letters, digits, '_', '.', '-' only")
        if endpoint.provider is not None and endpoint.provider not in PROVIDERS:
            raise ValueError(f"simulated endpoint {name!r}: unknown provider {endpoint.provider!r}")
    for name, ceiling in config.shared.items():
        unknown = [e for e in ceiling.endpoints if e not in config.endpoints]
        if unknown:
            raise ValueError(f"shared limit {name!r} names no simulated endpoint {unknown[0]!r}")


def limits_config(limits: EndpointSim | SharedSim) -> SimConfig:
    """A config holding only `limits` (what a `RateLimiter` reads)."""
    return SimConfig(rpm=limits.rpm, itpm=limits.itpm, otpm=limits.otpm, burst=limits.burst)


def with_tier(config: SimConfig, name: str) -> SimConfig:
    """`config` with the limits of tier `name` (KeyError when unknown)."""
    tier = TIERS[name.lower()]
    return replace(config, rpm=tier.rpm, itpm=tier.itpm, otpm=tier.otpm)
