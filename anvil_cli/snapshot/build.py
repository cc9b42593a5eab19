"""The run snapshot, built in one place: `build_snapshot(state, metrics, ...)` turns the value a
run driver hands over each tick (`anvil_cli.snapshot.state.EngineState`) and the run's `RunMetrics` into
one typed, JSON-able `Snapshot` (its shape: `anvil_cli.snapshot.types`). The journal stores it
(`runs.snapshot_json`), `anvil status --json` and `GET /status` serve it, and the dashboard, the
progress line, `/metrics` and the alert rules read it. Reads no clock: `now` is the metrics'
monotonic clock, and wall times are derived from `started_wall`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any, Final, cast

from anvil_cli.policy.governor.limiter import DIMENSIONS
from anvil_cli.policy.governor.view import DimensionView, GovernorView
from anvil_cli.policy.pricing.table import model_class
from anvil_cli.snapshot.endpoints import endpoints_of
from anvil_cli.snapshot.histograms import LogHistogram, summaries
from anvil_cli.snapshot.history import history_of
from anvil_cli.snapshot.metrics import PROM_BOUNDS_S, RunMetrics
from anvil_cli.snapshot.state import EngineState
from anvil_cli.snapshot.types import (
    SNAPSHOT_VERSION,
    Agents,
    Alert,
    BatchesState,
    Breaker,
    Budget,
    CallLatency,
    Cost,
    Counts,
    Dimension,
    Errors,
    Failure,
    HistogramData,
    Histograms,
    LastError,
    LastToolError,
    Pool,
    Snapshot,
    WorkerRow,
    Workers,
)

__all__ = [
    "SNAPSHOT_VERSION",
    "Snapshot",
    "build_snapshot",
    "limiter_headroom",
    "pending_of",
    "pool_of",
    "snapshot_of",
]

_BINDING_MIN_PCT: Final = 1.0  # below this nothing is "binding": the pool is idle


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole > 0 else 0.0


def _num(value: float | None) -> float | None:
    return None if value is None else float(value)


def pool_of(model: str, pools: list[str]) -> str | None:
    """The pool `model` draws from, among the governor's pools keyed `<rate_limits key>:<model
    class>` (see governor_host.manager.limits_resolver): an exact or glob key first, then "default"."""
    cls = model_class(model)
    fallback = None
    for pool in pools:
        key, _, pool_cls = pool.rpartition(":")
        if pool_cls != cls:
            continue
        if key == "default":
            fallback = pool
        elif key == model or fnmatch.fnmatch(model, key):
            return pool
    return fallback


def _usage_by_pool(pools: list[str], per_model: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Recent use per minute of each pool: the sum over the models drawing from it."""
    used = {pool: dict.fromkeys(DIMENSIONS, 0.0) for pool in pools}
    for model, usage in per_model.items():
        pool = pool_of(model, pools)
        if pool is not None:
            for dim in DIMENSIONS:
                used[pool][dim] += usage.get(f"{dim}_per_min", 0.0)
    return used


def _dimension(raw: DimensionView, used_per_min: float) -> Dimension:
    rate = _num(raw.rate_per_min)
    capacity, level = _num(raw.capacity), _num(raw.level)
    level_pct = _pct(level, capacity) if capacity and level is not None else None
    drawn = 100.0 - max(0.0, min(100.0, level_pct)) if level_pct is not None else 0.0
    # a full bucket's burst lets the recent rate run above the limit for a while: cap at 100%
    in_use = min(100.0, max(_pct(used_per_min, rate), drawn)) if rate else None
    return {
        "rate_per_min": rate,
        "configured_per_min": _num(raw.configured_per_min),
        "capacity": capacity,
        "level": level,
        "reserved_in_flight": _num(raw.reserved_in_flight) or 0.0,
        "used_per_min": round(used_per_min, 1),
        "level_pct": level_pct,
        "in_use_pct": None if in_use is None else round(in_use, 1),
        "headroom_pct": None if in_use is None else round(max(0.0, 100.0 - in_use), 1),
    }


def _binding(dims: dict[str, Dimension], paused: bool, ended: bool) -> str | None:
    """The dimension closest to its limit while the run can still be held back by it."""
    if ended:
        return None
    if paused:
        return "paused"
    limited = {d: v["in_use_pct"] for d, v in dims.items() if v["in_use_pct"] is not None}
    if not limited:
        return None
    binding = max(limited, key=lambda d: limited[d])
    return binding if limited[binding] >= _BINDING_MIN_PCT else None


def limiter_headroom(
    governor: GovernorView, per_model: dict[str, dict[str, float]], *, ended: bool = False
) -> dict[str, Pool]:
    """Per pool and dimension: % of the effective rate in use, and which dimension binds (none
    once the run has ended: nothing is held back any more)."""
    out: dict[str, Pool] = {}
    pools = governor.pools
    usage = _usage_by_pool(list(pools), per_model)
    for pool, raw in sorted(pools.items()):
        dims = {dim: _dimension(spec, usage[pool][dim]) for dim, spec in raw.dimensions.items()}
        paused = _num(raw.paused_until_s)
        out[pool] = {
            "paused_for_s": round(paused, 2) if paused and not ended else None,
            "binding": _binding(dims, bool(paused), ended),
            "dimensions": dims,
        }
    return out


def _breakers(governor: GovernorView) -> dict[str, Breaker]:
    out: dict[str, Breaker] = {}
    for model, b in sorted(governor.breakers.items()):
        retry_in_s = round(b.retry_in_s, 1) if b.retry_in_s else None
        out[model] = {"state": b.state, "failures": b.failures, "retry_in_s": retry_in_s}
        if b.reason is not None:  # its endpoint refused the run's calls
            out[model]["reason"] = b.reason
    return out


def _budget(governor: GovernorView) -> Budget:
    b = governor.budget
    if b is None:
        return {"spent_usd": 0.0, "reserved_usd": 0.0, "max_usd": None, "warn_usd": None}
    return {
        "spent_usd": _num(b.spent_usd) or 0.0,
        "reserved_usd": _num(b.reserved_usd) or 0.0,
        "max_usd": _num(b.max_usd),
        "warn_usd": _num(b.warn_usd),
    }


def _cost(metrics: RunMetrics, rates: dict[str, Any], remaining: int) -> Cost:
    so_far = metrics.cost_before_usd + metrics.cost_usd
    per_job = metrics.cost_usd / metrics.done if metrics.done else None
    # the same forecast as `anvil plan` (anvil_cli.policy.forecast), from this run's answers so far
    projected = metrics.job_cost.project(so_far, remaining)
    return {
        "so_far_usd": round(so_far, 6),
        "session_usd": round(metrics.cost_usd, 6),
        "per_hour_usd": rates["cost_per_hour_usd"],
        "average_per_hour_usd": rates["average_cost_per_hour_usd"],
        "per_job_usd": None if per_job is None else round(per_job, 8),
        "projected_total_usd": None if projected is None else round(projected.expected, 6),
        "projected_range_usd": None
        if projected is None
        else {
            "p10": round(projected.p10, 6),
            "expected": round(projected.expected, 6),
            "p90": round(projected.p90, 6),
        },
    }


def _workers(state: EngineState) -> Workers:
    rows: list[WorkerRow] = [
        {"id": w.id, "pid": w.pid, "alive": w.alive, "jobs": w.jobs, "node": w.node, "waiting": w.waiting}
        for w in state.workers
    ]
    return {
        "count": len(rows),
        "alive": sum(1 for r in rows if r["alive"]),
        "waiting": sum(1 for r in rows if r["waiting"]),
        "restarts": state.worker_restarts,
        "list": rows,
    }


def _errors(metrics: RunMetrics, rates: dict[str, Any]) -> Errors:
    return {
        "window_s": rates["error_window_s"],
        "error_rate_pct": rates["error_rate_pct"],
        "attempts": rates["attempts"],
        "failed_attempts": rates["failed_attempts"],
        "rate_limited_recent": rates["rate_limited"],
        "api_calls": metrics.api_calls,
        "rate_limited": metrics.rate_limited,
        "retries": metrics.retried_attempts,
        "by_type": dict(metrics.errors_by_type.most_common()),
        "retries_by_type": dict(metrics.retries_by_type.most_common()),
        "failures_by_type": dict(metrics.final_errors_by_type.most_common()),
        # RunMetrics keeps these as plain dicts of exactly these shapes (see its _on_failure, on_attempt)
        "last_failures": cast("list[Failure]", list(metrics.last_failures)),
        "last_error": cast("LastError | None", metrics.last_error),
        "tool_errors": metrics.tool_errors,
        "tool_errors_by_kind": dict(metrics.tool_errors_by_kind.most_common()),
        "last_tool_error": cast("LastToolError | None", metrics.last_tool_error),
    }


CAPPED_BUSY_PCT: Final = 95.0  # agents this busy at max_agents, jobs waiting, no limit binding
CAPPED_LIMIT_PCT: Final = 90.0


def _agents(state: EngineState, waiting: int, limits: dict[str, Pool]) -> Agents:
    busy = min(100.0, _pct(state.in_flight, state.agent_limit))
    return {
        "in_flight": state.in_flight,
        "limit": state.agent_limit,
        "min": state.agent_min,
        "max": state.agent_max,
        "utilisation_pct": busy,
        "draining": max(0, state.in_flight - state.agent_limit),
        "feedable": state.feedable,
        "capped_note": _capped_note(state, busy, waiting, limits),
    }


def _capped_note(state: EngineState, busy: float, waiting: int, limits: dict[str, Pool]) -> str | None:
    """Say so when max_agents, not a rate limit, holds a run back: every agent busy, jobs waiting,
    no limit near its rate, and the limits could feed more agents than max_agents."""
    rate_bound = any(
        pool["paused_for_s"]
        or any((d["in_use_pct"] or 0.0) >= CAPPED_LIMIT_PCT for d in pool["dimensions"].values())
        for pool in limits.values()
    )
    feeds_more = state.feedable is None or state.feedable > state.agent_max
    if state.mode != "messages" or state.ended or rate_bound or not feeds_more:
        return None
    if state.agent_limit < state.agent_max or busy < CAPPED_BUSY_PCT or waiting <= 0:
        return None
    could = f"~{state.feedable:,}" if state.feedable is not None else "more"
    return f"the rate limits could feed {could} agents; max_agents caps at {state.agent_max:,}"


def _histogram(hist: LogHistogram) -> HistogramData:
    return {"cumulative": hist.cumulative(PROM_BOUNDS_S), "count": hist.count, "sum": round(hist.total, 6)}


def _histograms(metrics: RunMetrics) -> Histograms:
    return {
        "bounds_s": list(PROM_BOUNDS_S),
        "call_latency": {m: _histogram(h) for m, h in sorted(metrics.call_latency_by_model.items())},
        "job_time": {m: _histogram(h) for m, h in sorted(metrics.job_time_by_model.items())},
    }


def pending_of(state: EngineState, metrics: RunMetrics) -> int:
    """Jobs of the run not yet dispatched."""
    return max(0, metrics.total - metrics.done - metrics.already_done - state.in_flight)


def _counts(state: EngineState, metrics: RunMetrics) -> Counts:
    done = metrics.done + metrics.already_done
    return {
        "total": max(metrics.total, done),
        "done": done,
        "succeeded": metrics.succeeded + metrics.already_done - metrics.already_failed,
        "failed": metrics.failed + metrics.already_failed,
        "pending": pending_of(state, metrics),
        "running": state.in_flight,
    }


def _eta(remaining: int, rate: float, ended: bool) -> float | None:
    """Seconds left at the recent completion rate; null when it cannot be known."""
    if remaining == 0:
        return 0.0
    if ended or rate <= 0:
        return None
    return round(remaining / rate, 1)


def _batches(state: EngineState) -> BatchesState | None:
    b = state.batches
    if b is None:
        return None
    return {"submitted": b.submitted, "processing_requests": b.processing_requests, "ended": b.ended}


def build_snapshot(
    state: EngineState,
    metrics: RunMetrics,
    *,
    batch_path: str,
    started_wall: float,
    now: float,
    alerts: Iterable[Alert] = (),
    growing: int = 0,
) -> Snapshot:
    """The run at `now` (monotonic, the metrics' clock). `alerts`: the active ones; `growing`:
    the backlog if it grew over the last minute (see `snapshot.monitor.Backlog`)."""
    elapsed = max(0.0, now - metrics.started_at)
    rates = metrics.rates(now)
    counts = _counts(state, metrics)
    remaining = max(0, counts["total"] - counts["done"])
    eta_rate, eta_window = metrics.completion_rate(now)
    call_latency: CallLatency = {
        **metrics.call_latency.summary(),
        "recent_p95": rates["recent_call_p95_s"],
    }
    governor = state.governor
    limits = limiter_headroom(governor, rates["per_model"], ended=state.ended)
    breakers = _breakers(governor)
    snap: Snapshot = {
        "version": SNAPSHOT_VERSION,
        "run_id": state.run_id,
        "batch_path": batch_path,
        "mode": state.mode,
        "state": state.phase,
        "paused": state.paused,
        "started_at": round(started_wall, 3),
        "updated_at": round(started_wall + elapsed, 3),
        "elapsed_s": round(elapsed, 3),
        "counts": counts,
        "progress_pct": _pct(counts["done"], counts["total"]) if counts["total"] else 100.0,
        "eta_s": _eta(remaining, eta_rate, state.ended),
        "throughput": {
            "window_s": rates["window_s"],
            "jobs_per_s": rates["jobs_per_s"],
            "requests_per_min": rates["requests_per_min"],
            "jobs_per_s_overall": round(metrics.done / elapsed, 3) if elapsed > 0 else 0.0,
            "eta_jobs_per_s": round(eta_rate, 3),
            "eta_window_s": eta_window,
        },
        "call_latency_s": call_latency,
        "call_latency_by_model_s": summaries(metrics.call_latency_by_model),
        "job_time_s": metrics.job_time.summary(),
        "job_time_by_model_s": summaries(metrics.job_time_by_model),
        "histograms": _histograms(metrics),
        "errors": _errors(metrics, rates),
        "agents": _agents(state, counts["pending"], limits),
        "workers": _workers(state),
        "queue": {"ready": state.queue_depth, "pending": counts["pending"], "growing": growing},
        "queue_depth": state.queue_depth,
        "limits": limits,
        "breakers": breakers,
        "budget": _budget(governor),
        "cost": _cost(metrics, rates, remaining),
        "tokens": {
            "input": metrics.input_tokens,
            "output": metrics.output_tokens,
            "cache_read": metrics.cache_read_tokens,
            "cache_write": metrics.cache_write_tokens,
        },
        "alerts": list(alerts),
        "history": history_of(state.history),
        "batches": _batches(state),
        "metrics": metrics.summary(now),
        "governor": governor.to_dict(),
    }
    endpoints = endpoints_of(metrics.endpoints, limits, breakers)
    if endpoints:  # only on a run with named endpoints: without them the JSON is as it was
        snap["endpoints"] = endpoints
    return snap


def snapshot_of(data: Mapping[str, Any] | None) -> Snapshot | None:
    """A snapshot read back as JSON (the journal, the API), or None if `data` is not one of this
    version (none stored yet, or one written by an older Anvil)."""
    if data is None or data.get("version") != SNAPSHOT_VERSION:
        return None
    return cast(Snapshot, data)
