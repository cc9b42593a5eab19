"""How many worker processes a local run needs: pure policy.

A worker is one asyncio process holding many agents; what it spends is CPU per call (~1.1 ms:
the SDK's request and response, Anvil's bookkeeping; benchmark 5), not time per agent. So one
worker serves a run whose calls cannot come faster than `RPM_PER_WORKER` requests/min (400 a
second) on under half a core. Calls never come faster than the configured limits allow (the
governor follows the server's headers down, never above what is configured), so the sum of the
request rates of the pools the run's models draw from bounds them. Each further worker is one
more copy of the SDK and its agents' memory (~100 MB) and one more start-up, for nothing when
the API is what the run waits on.

`scaling.workers` set by the user is always obeyed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from anvil_cli.config.endpoint_checks import batch_models
from anvil_cli.config.settings import RateLimit, Settings, rate_limit_entry
from anvil_cli.policy.pricing.table import pool_key

RPM_PER_WORKER = 24_000.0


def request_rate_bound(settings: Settings, models: Iterable[str]) -> float:
    """Requests per minute the run's calls cannot exceed: the configured rate of every pool the
    models (with their fallbacks and the default judge) draw from, one pool per rate-limit
    entry and model class, on every endpoint (an endpoint that cannot serve a model is counted
    anyway: an upper bound is all this needs)."""
    wanted = batch_models(dict.fromkeys(models, 1), settings) | {settings.checks.judge_model}
    for model in list(wanted):
        wanted.update(settings.routing.fallbacks.get(model, ()))
    tables: list[Mapping[str, RateLimit]] = [e.rate_limits for e in settings.endpoints]
    tables = tables or [settings.rate_limits]
    total = 0.0
    for table in tables:
        pools: dict[str, float] = {}
        for model in wanted:
            key, rl = rate_limit_entry(table, model)
            pools[pool_key(key, model)] = rl.requests_per_minute
        total += sum(pools.values())
    return total


def workers_needed(settings: Settings, models: Iterable[str], cpus: int) -> int:
    """Worker processes for a local run: `scaling.workers` if set, else as many as the run's
    request rate bound needs at `RPM_PER_WORKER` each, at least one, at most one per CPU."""
    if settings.scaling.workers:
        return settings.scaling.workers
    wanted = math.ceil(request_rate_bound(settings, models) / RPM_PER_WORKER)
    return max(1, min(cpus, wanted))
