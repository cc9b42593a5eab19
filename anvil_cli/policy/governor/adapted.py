"""What the governor journals as "limit_adapted": a pool's limit changed by the server's headers,
or learned from 429s where no headers come (the events' data)."""

from __future__ import annotations

from typing import Any

from anvil_cli.policy.governor.calls import Outcome
from anvil_cli.policy.governor.learn import Learned
from anvil_cli.policy.governor.limiter import PoolLimiter


def header_changes(key: str, pool: PoolLimiter, outcome: Outcome, now: float) -> list[dict[str, Any]]:
    """Let `pool` read the call's rate-limit headers; the data of each limit they changed."""
    return [
        {
            "pool": key,
            "dimension": change.dimension,
            "configured_per_min": change.configured_per_min,
            "server_per_min": change.server_per_min,
            "effective_per_min": change.effective_per_min,
        }
        for change in pool.observe(outcome.headers, now, outcome.headers_at)
    ]


def learned_change(key: str, learned: Learned) -> dict[str, Any]:
    """The data of a rate learned from 429s (or from calls succeeding again)."""
    return {
        "pool": key,
        "dimension": learned.dimension,
        "configured_per_min": learned.configured_per_min,
        "server_per_min": None,
        "effective_per_min": learned.effective_per_min,
        "learned": True,
        "reason": learned.reason,
    }
