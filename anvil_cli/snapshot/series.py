"""The run over time: one compact `Sample` per tick, taken from the snapshot, kept in the journal
(`samples` table) so the live web page (`GET /series`) and `anvil report` draw the same charts.

A sample holds what the charts plot and nothing else. Figures that only make sense as a rate
over time (failed calls by type, 429s, calls) are stored cumulative for the session (`session`
is its start): a reader gets the rate between any two samples by difference, so a downsampled
series stays exact. API call latency percentiles cannot be differenced: each sample holds those
of the calls timed over the `LATENCY_WINDOW_S` before it, as `RunMetrics.call_latency_window`
reads them from its 1%-bucket histograms (within 0.5% of the exact figures; the recent p95 of
the dashboard and the alert comes from the same place). Samples of older journals, whose
windows were interpolated in coarse buckets, keep the same shape and still render.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Final, TypedDict

from anvil_cli.snapshot.metrics import SERIES_WINDOW_S, RunMetrics
from anvil_cli.snapshot.types import CallLatencyWindow, Counts, Pool, Snapshot, TimeSummary

__all__ = [
    "LATENCY_WINDOW_S",
    "MAX_POINTS",
    "MIN_GAP_S",
    "Sample",
    "Sampler",
    "downsample",
]

LATENCY_WINDOW_S: Final = SERIES_WINDOW_S  # the calls the latency percentiles of a sample are taken over
MIN_GAP_S: Final = 0.9  # at most about one sample a second (the ticks are a second apart)
MAX_POINTS: Final = 1_500  # a long series is thinned to this many samples for a page or report
ENDED_STATES: Final = frozenset({"finished", "stopped"})
LatencyWindow = TimeSummary  # API call latency of the calls timed in the sample's window (None: no call)


class PoolSample(TypedDict):
    in_use_pct: float | None  # the pool's most used dimension (None: no client-side limit)
    binding: str | None  # the dimension closest to its limit, "paused", or None


class Sample(TypedDict):
    """The run at one tick, as the charts need it. `t` is wall-clock Unix seconds."""

    t: float
    session: float  # when this session started: cumulative figures restart with it
    elapsed_s: float
    state: str
    counts: Counts
    jobs_per_s: float
    requests_per_min: float
    latency_window_s: float
    latency_s: LatencyWindow
    latency_by_model_s: dict[str, LatencyWindow]
    errors_by_type: dict[str, int]  # failed calls by type, cumulative over the session
    rate_limited: int  # 429s, cumulative over the session
    api_calls: int  # cumulative over the session
    cost_usd: float  # the whole run's
    cost_per_hour_usd: float
    budget_max_usd: float | None
    agents_in_flight: int
    agents_limit: int
    pools: dict[str, PoolSample]
    breakers: dict[str, str]  # model -> closed | open | half_open
    workers_alive: int
    workers: int
    worker_restarts: int
    alerts: int  # active alerts


def _pools(limits: Mapping[str, Pool]) -> dict[str, PoolSample]:
    out: dict[str, PoolSample] = {}
    for name, pool in limits.items():
        used = [d["in_use_pct"] for d in pool["dimensions"].values() if d["in_use_pct"] is not None]
        out[name] = {"in_use_pct": max(used) if used else None, "binding": pool["binding"]}
    return out


class Sampler:
    """Turns one session's ticks into samples: `sampler.take(snapshot, metrics, now)`, the
    snapshot built from `metrics` at `now`; None when the last sample is less than `MIN_GAP_S`
    old, unless the run has just ended."""

    def __init__(self, window_s: float = LATENCY_WINDOW_S, min_gap_s: float = MIN_GAP_S) -> None:
        self.window_s = window_s
        self.min_gap_s = min_gap_s
        self._last_t: float | None = None

    def take(self, snap: Snapshot, metrics: RunMetrics, now: float) -> Sample | None:
        t = float(snap["updated_at"])
        ended = snap["state"] in ENDED_STATES
        if self._last_t is not None and t - self._last_t < self.min_gap_s and not ended:
            return None
        self._last_t = t
        return _sample(snap, metrics.call_latency_window(now, self.window_s))


def _sample(snap: Snapshot, window: CallLatencyWindow) -> Sample:
    errors, agents, workers = snap["errors"], snap["agents"], snap["workers"]
    return {
        "t": snap["updated_at"],
        "session": snap["started_at"],
        "elapsed_s": snap["elapsed_s"],
        "state": snap["state"],
        "counts": copy.copy(snap["counts"]),
        "jobs_per_s": snap["throughput"]["jobs_per_s"],
        "requests_per_min": snap["throughput"]["requests_per_min"],
        "latency_window_s": window["window_s"],
        "latency_s": copy.copy(window["all"]),
        "latency_by_model_s": {model: copy.copy(w) for model, w in sorted(window["by_model"].items())},
        "errors_by_type": dict(errors["by_type"]),
        "rate_limited": errors["rate_limited"],
        "api_calls": errors["api_calls"],
        "cost_usd": snap["cost"]["so_far_usd"],
        "cost_per_hour_usd": snap["cost"]["per_hour_usd"],
        "budget_max_usd": snap["budget"]["max_usd"],
        "agents_in_flight": agents["in_flight"],
        "agents_limit": agents["limit"],
        "pools": _pools(snap["limits"]),
        "breakers": {model: b["state"] for model, b in snap["breakers"].items()},
        "workers_alive": workers["alive"],
        "workers": workers["count"],
        "worker_restarts": workers["restarts"],
        "alerts": len(snap["alerts"]),
    }


def downsample(samples: Sequence[Sample], max_points: int = MAX_POINTS) -> list[Sample]:
    """At most `max_points` of `samples`, evenly spaced, the first and last always kept.
    Cumulative figures stay exact between the kept samples; the others are as they were then."""
    n = len(samples)
    if n <= max_points:
        return list(samples)
    if max_points < 2:
        return list(samples[-max_points:]) if max_points > 0 else []
    stride = math.ceil((n - 1) / (max_points - 1))
    kept = list(samples[::stride])
    if kept[-1] is not samples[-1]:
        kept.append(samples[-1])
    return kept
