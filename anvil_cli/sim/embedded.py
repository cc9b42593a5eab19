"""The simulator `anvil run --simulate` and `anvil plan --simulate` start: its fixed shape."""

from __future__ import annotations

from typing import Any

from anvil_cli.sim.config import SimConfig

LATENCY_MS = 400.0
LATENCY_SPREAD = 0.3
OUTPUT_TOKENS = 120
OUTPUT_TOKENS_SPREAD = 0.5
SEED = 7


def embedded_config(settings: Any) -> SimConfig:
    """A simulator with the run's configured limits (those of the Sonnet pool) and Anvil's
    default latency and output-token distributions."""
    _, rl = settings.rate_limit_for("claude-sonnet-4-6")
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
    )
