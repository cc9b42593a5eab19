"""The run over time: one compact `Sample` per tick, taken from the snapshot, kept in the journal
(`samples` table) so the live web page (`GET /series`) and `anvil report` draw the same charts.

A sample holds what the charts plot and nothing else. Figures that only make sense as a rate
over time (failed calls by type, 429s, calls) are stored cumulative for the session (`session`
is its start): a reader gets the rate between any two samples by difference, so a downsampled
series stays exact. API call latency percentiles cannot be differenced, so `Sampler` computes
them over the last `LATENCY_WINDOW_S` from the snapshot's cumulative histograms.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Final, TypedDict

from anvil_cli.snapshot_types import Counts, HistogramData, Pool, Snapshot

__all__ = [
    "LATENCY_WINDOW_S",
    "MAX_POINTS",
    "MIN_GAP_S",
    "Sample",
    "Sampler",
    "downsample",
    "quantile",
]

LATENCY_WINDOW_S: Final = 10.0  # the calls the latency percentiles of a sample are taken over
MIN_GAP_S: Final = 0.9  # at most about one sample a second (the ticks are a second apart)
MAX_POINTS: Final = 1_500  # a long series is thinned to this many samples for a page or report
ENDED_STATES: Final = frozenset({"finished", "stopped"})
QUANTILES: Final = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


class LatencyWindow(TypedDict):
    """API call latency of the calls answered in the sample's window (None: no call)."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None


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


Buckets = tuple[list[int], int]  # (cumulative bucket counts, count) of one histogram
Cumulative = dict[str, Buckets]  # by model


def quantile(q: float, bounds: Sequence[float], cumulative: Sequence[int], count: int) -> float | None:
    """The `q` quantile of a Prometheus-style histogram (`cumulative[i]` values at most
    `bounds[i]`, `count` in all), interpolated linearly inside its bucket as Prometheus'
    `histogram_quantile` does; values above the last bound read as that bound. None if empty."""
    if count <= 0:
        return None
    rank = q * count
    below, lower = 0, 0.0
    for bound, cum in zip(bounds, cumulative, strict=True):
        if cum >= rank and cum > below:
            return round(lower + (bound - lower) * (rank - below) / (cum - below), 4)
        below, lower = cum, bound
    return float(bounds[-1]) if bounds else None


def _window(bounds: Sequence[float], now: Buckets, then: Buckets) -> LatencyWindow:
    (cum, count), (cum0, count0) = now, then
    if count0 > count or len(cum0) != len(cum):  # a reset: count from zero
        cum0, count0 = [0] * len(cum), 0
    diff = [a - b for a, b in zip(cum, cum0, strict=True)]
    n = count - count0
    p = {key: quantile(q, bounds, diff, n) for key, q in QUANTILES}
    return {"count": n, "p50": p["p50"], "p95": p["p95"], "p99": p["p99"]}


def _cumulative(hists: Mapping[str, HistogramData]) -> Cumulative:
    return {model: (list(h["cumulative"]), int(h["count"])) for model, h in hists.items()}


def _total(per_model: Cumulative, width: int) -> Buckets:
    cum, count = [0] * width, 0
    for buckets, n in per_model.values():
        cum = [a + b for a, b in zip(cum, buckets, strict=True)]
        count += n
    return cum, count


def _pools(limits: Mapping[str, Pool]) -> dict[str, PoolSample]:
    out: dict[str, PoolSample] = {}
    for name, pool in limits.items():
        used = [d["in_use_pct"] for d in pool["dimensions"].values() if d["in_use_pct"] is not None]
        out[name] = {"in_use_pct": max(used) if used else None, "binding": pool["binding"]}
    return out


class Sampler:
    """Turns one session's snapshots into samples: `sample = sampler.take(snapshot)` (None when
    the last one is less than `MIN_GAP_S` old, unless the run has just ended). Keeps the last
    `LATENCY_WINDOW_S` of call-latency histograms in memory to take the window's percentiles."""

    def __init__(self, window_s: float = LATENCY_WINDOW_S, min_gap_s: float = MIN_GAP_S) -> None:
        self.window_s = window_s
        self.min_gap_s = min_gap_s
        self._seen: deque[tuple[float, Cumulative]] = deque()
        self._last_t: float | None = None

    def take(self, snap: Snapshot) -> Sample | None:
        t = float(snap["updated_at"])
        ended = snap["state"] in ENDED_STATES
        if self._last_t is not None and t - self._last_t < self.min_gap_s and not ended:
            return None
        self._last_t = t
        hists = snap["histograms"]
        now = _cumulative(hists["call_latency"])
        then = self._reference(t)
        self._seen.append((t, now))
        while len(self._seen) > 1 and self._seen[1][0] <= t - self.window_s:
            self._seen.popleft()  # keep one sample at least `window_s` old: the next reference
        return _sample(snap, hists["bounds_s"], now, then, self.window_s)

    def _reference(self, t: float) -> Cumulative:
        """The histograms of the latest sample at least `window_s` before `t` (nothing before
        the session's first `window_s`: its calls all count)."""
        ref: Cumulative = {}
        for seen_t, cum in self._seen:
            if seen_t > t - self.window_s:
                break
            ref = cum
        return ref


def _sample(
    snap: Snapshot, bounds: list[float], now: Cumulative, then: Cumulative, window_s: float
) -> Sample:
    width = len(bounds)
    empty: Buckets = ([0] * width, 0)
    by_model = {model: _window(bounds, cum, then.get(model, empty)) for model, cum in sorted(now.items())}
    errors, agents, workers = snap["errors"], snap["agents"], snap["workers"]
    return {
        "t": snap["updated_at"],
        "session": snap["started_at"],
        "elapsed_s": snap["elapsed_s"],
        "state": snap["state"],
        "counts": copy.copy(snap["counts"]),
        "jobs_per_s": snap["throughput"]["jobs_per_s"],
        "requests_per_min": snap["throughput"]["requests_per_min"],
        "latency_window_s": window_s,
        "latency_s": _window(bounds, _total(now, width), _total(then, width)),
        "latency_by_model_s": by_model,
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
