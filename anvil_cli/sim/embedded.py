"""The simulator `anvil run --simulate` and `anvil plan --simulate` start: its fixed shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anvil_cli.sim.config import SimConfig

LATENCY_MS = 400.0
LATENCY_SPREAD = 0.3
OUTPUT_TOKENS = 120
OUTPUT_TOKENS_SPREAD = 0.5
SEED = 7
BATCH_DIR = "sim-batches"  # under the state dir: a resumed run finds the batches it submitted


def embedded_config(settings: Any) -> SimConfig:
    """A simulator with the run's configured limits (those of the Sonnet pool), Anvil's
    default latency and output-token distributions, and its Message Batches kept in
    `<state_dir>/sim-batches/` (so `anvil run --simulate --mode batches` resumes)."""
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
        batch_dir=str(Path(settings.state_dir) / BATCH_DIR),
    )
