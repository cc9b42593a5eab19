"""The p10-p90 range of a plan's duration: what moves it off the expected schedule
(plan/schedule.py), from the latency observed and the limiter's behaviour.

Where the agents bind, the duration is a chain of calls per agent: it moves with the mean
latency (its fit's own error: the spread around the latency line over the square root of the
answers) and with each call's spread (a chain of k calls varies by cv x sqrt(k) calls). Where a
rate limit binds, it moves with the output tokens (their p10-p90: the output-token limit's
time), and with the governor's own behaviour at p90: it paces a little under the limits and
starts with its request bucket short of `burst_size` by a reserve (at p10 and expected: the
limits and the burst as configured). Either
way the run ends with one last call, short (p10 of one call) or long (p90).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from anvil_cli.plan.schedule import Pace
from anvil_cli.policy.forecast import Z90, ModelFit

# the governor's pacing (engine/governor_host/spec.py: RATE_MARGIN, BURST_RESERVE): it paces
# at this share of a limit, and keeps this share of the request burst in reserve
PACING = 0.98
BURST_RESERVE = 0.10


def latency_spread(
    models: Iterable[tuple[int, ModelFit | None, float, float]], sigma: float
) -> tuple[float, float]:
    """(one call's latency spread as a cv, the fitted mean latency's own relative error) over
    the batch's jobs, from (jobs, fit, their expected output tokens, the sum of those squared)
    per model. With a latency fit: its spread around the line, plus the line's slope times the
    spread of output tokens (around the output fit, and across the jobs' expected outputs); the
    mean's error is the first two over the square root of the answers. Else a known lognormal
    `sigma` (the simulator's), else none (the latency is assumed)."""
    cv = error = 0.0
    jobs = 0
    for count, fit, outputs, squares in models:
        jobs += count
        if fit is not None and fit.latency is not None and count > 0:
            mean_out = outputs / count
            seconds = fit.latency_s(mean_out) or 0.0
            if seconds <= 0:
                continue
            around = fit.latency.cv * seconds  # the line's cv is over the answers' mean latency
            by_output = fit.latency.slope * fit.output.cv * mean_out
            across = fit.latency.slope * math.sqrt(max(0.0, squares / count - mean_out * mean_out))
            cv += count * math.sqrt(around**2 + by_output**2 + across**2) / seconds
            error += count * math.sqrt(around**2 + by_output**2) / seconds / math.sqrt(max(1, fit.answers))
        elif fit is None and sigma > 0:
            cv += count * math.sqrt(math.exp(sigma**2) - 1)
    return (cv / jobs, error / jobs) if jobs else (0.0, 0.0)


def duration_paces(
    latency_s: float, shares: tuple[float, float, float], spread: tuple[float, float]
) -> list[tuple[float, float, Pace | None]]:
    """(mean latency, output share, pace) of the p10, expected and p90 schedules, the output
    at `shares` of the expected and the latency `spread` (`latency_spread`)."""
    cv, error = spread
    low = latency_s * max(0.0, 1 - Z90 * error)
    high = latency_s * (1 + Z90 * error)
    fast = Pace(tail_s=low * max(0.0, 1 - Z90 * cv), chain_sd=-Z90, latency_cv=cv)
    slow = Pace(
        tail_s=high * (1 + Z90 * cv),
        rate_share=PACING,
        bucket_start=1 - BURST_RESERVE,
        chain_sd=Z90,
        latency_cv=cv,
    )
    return [(low, shares[0], fast), (latency_s, shares[1], None), (high, shares[2], slow)]
