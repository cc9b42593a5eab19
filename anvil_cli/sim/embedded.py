"""The simulator `anvil run --simulate` and `anvil plan --simulate` start: its fixed shape."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from anvil_cli.config.settings import rate_limit_entry
from anvil_cli.errors import ConfigError, Problem
from anvil_cli.sim.config import EndpointSim, SharedSim, SimConfig

LATENCY_MS = 400.0
LATENCY_SPREAD = 0.3
OUTPUT_TOKENS = 120
OUTPUT_TOKENS_SPREAD = 0.5
SEED = 7
BATCH_DIR = "sim-batches"  # under the state dir: a resumed run finds the batches it submitted
LIMITS_OF = "claude-sonnet-4-6"  # whose configured rate limits the simulator enforces
INVALID_RATE_ENV = "ANVIL_SIM_INVALID_RATE"  # `--invalid-rate` of the embedded simulator


def invalid_rate_of(environ: Mapping[str, str]) -> float:
    """The embedded simulator's invalid rate: `ANVIL_SIM_INVALID_RATE` (a share, 0 to 1), else 0."""
    text = environ.get(INVALID_RATE_ENV, "").strip()
    if not text:
        return 0.0
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        where = f"environment variable {INVALID_RATE_ENV}"
        raise ConfigError([Problem(where, f"must be a share from 0 to 1, got {text!r}")])
    return rate


def _limits(rate_limits: Mapping[str, Any]) -> dict[str, Any]:
    _, rl = rate_limit_entry(rate_limits, LIMITS_OF)
    return {
        "rpm": rl.requests_per_minute,
        "burst": rl.burst_size,
        "itpm": rl.input_tokens_per_minute,
        "otpm": rl.output_tokens_per_minute,
    }


def _endpoint(entry: Any) -> EndpointSim:
    return EndpointSim(provider=entry.provider, **_limits(entry.rate_limits))


def _shared(ceiling: Any) -> SharedSim:
    return SharedSim(endpoints=tuple(ceiling.endpoints), **_limits(ceiling.rate_limits))


def embedded_config(settings: Any, environ: Mapping[str, str] | None = None) -> SimConfig:
    """A simulator with the run's configured limits (those of the Sonnet pool), Anvil's
    default latency and output-token distributions, and its Message Batches kept in
    `<state_dir>/sim-batches/` (so `anvil run --simulate --mode batches` resumes). With
    `endpoints:`, one simulated endpoint per entry (`/e/{name}/`, its provider's wire format)
    with that entry's limits, and each of `shared_limits:` as a ceiling they also draw from;
    the unprefixed routes keep the top-level limits. `ANVIL_SIM_INVALID_RATE` (in `environ`,
    default the process's) sets its invalid rate, to rehearse re-asks without directives."""
    _, rl = settings.rate_limit_for(LIMITS_OF)
    return SimConfig(
        rpm=rl.requests_per_minute,
        burst=rl.burst_size,
        itpm=rl.input_tokens_per_minute,
        otpm=rl.output_tokens_per_minute,
        latency_ms=LATENCY_MS,
        latency_spread=LATENCY_SPREAD,
        output_tokens=OUTPUT_TOKENS,
        output_tokens_spread=OUTPUT_TOKENS_SPREAD,
        seed=SEED,
        invalid_rate=invalid_rate_of(os.environ if environ is None else environ),
        batch_dir=str(Path(settings.state_dir) / BATCH_DIR),
        endpoints={entry.name: _endpoint(entry) for entry in getattr(settings, "endpoints", ())},
        shared={name: _shared(c) for name, c in getattr(settings, "shared_limits", {}).items()},
    )
