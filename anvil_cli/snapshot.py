"""The run snapshot: one JSON-able dict, built once a second by the conductor, that the journal
stores (`runs.snapshot_json`), the dashboard renders, `anvil status --json` prints and the HTTP
API serves. Built from plain values; reads no clock (`now` is the metrics' monotonic clock, and
wall times are derived from `started_wall`).

Shape (every key always present; figures that cannot be known yet are null):

    version              1
    run_id, batch_path   str
    state                "running" | "stopping" | "paused" | "finished" | ...
    paused               bool
    started_at           wall-clock seconds when this session started
    updated_at           wall-clock seconds of this snapshot
    elapsed_s            seconds since this session started
    counts               {total, done, succeeded, failed, pending, in_flight}  (whole run; succeeded
                         and failed are this session's unless the journal's are merged in)
    progress_pct         done / total * 100
    eta_s                remaining / recent jobs per second (null while nothing finished recently)
    throughput           {window_s, jobs_per_s, requests_per_min, jobs_per_s_overall}
    latency_s            {count, p50, p95, p99, recent_p95}   (job latency, seconds; recent_p95 over
                         the last 30-60 s, what the latency alert watches)
    latency_by_model_s   {model: {count, p50, p95, p99}}
    errors               {window_s (last minute), error_rate_pct, attempts, failed_attempts,
                          rate_limited_recent, rate_limited, retries, by_type: {type: n},
                          failures_by_type: {type: n},
                          last_failures: [{seq, model, type, status_code, message, at_s}]}
    agents               {in_flight, limit, min, max, utilisation_pct}
    workers              {count, alive, restarts, list: [{id, pid, alive, jobs}]}
    queue                {ready, pending}; queue_depth: the same `ready`, for the API's readers
    limits               {pool: {paused_for_s, binding, dimensions: {requests|input_tokens|output_tokens:
                          {rate_per_min, configured_per_min, used_per_min, level_pct, in_use_pct,
                           headroom_pct}}}}
                         in_use_pct is the larger of the rate used over the recent window (as % of
                         the effective rate) and how far the bucket is drawn down; `binding` is the
                         dimension closest to its limit ("paused" during a 429 pause; null if idle)
    breakers             {model: {state, failures, retry_in_s}}
    budget               {spent_usd, reserved_usd, max_usd, warn_usd}   (the governor's, this session)
    cost                 {so_far_usd, session_usd, per_hour_usd (recent window), average_per_hour_usd
                          (this session), per_job_usd, projected_total_usd}
    tokens               {input, output, cache_read, cache_write}
    alerts               [{name, severity, message, value, threshold, since}]  (active ones)
    metrics              `RunMetrics.summary()` (the same keys as `anvil run --json`'s figures)
    governor             the governor's own snapshot (`Governor.snapshot()`), as given
"""

from __future__ import annotations

from typing import Any, Final

from anvil_cli.metrics import RunMetrics
from anvil_cli.models import model_class

SNAPSHOT_VERSION: Final = 1
DIMENSIONS: Final = ("requests", "input_tokens", "output_tokens")
_BINDING_MIN_PCT: Final = 1.0  # below this nothing is "binding": the pool is idle


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole > 0 else 0.0


def pool_of(model: str, pools: list[str]) -> str | None:
    """The pool `model` draws from, among the governor's pools keyed `<rate_limits key>:<model
    class>` (see engine.shared.limits_resolver): an exact or glob key first, then "default"."""
    import fnmatch

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


def _dimension(raw: dict[str, Any], used_per_min: float) -> dict[str, Any]:
    rate = raw.get("rate_per_min")
    capacity, level = raw.get("capacity"), raw.get("level")
    level_pct = _pct(level, capacity) if capacity and level is not None else None
    drawn = 100.0 - max(0.0, min(100.0, level_pct)) if level_pct is not None else 0.0
    # a full bucket's burst lets the recent rate run above the limit for a while: cap at 100%
    in_use = min(100.0, max(_pct(used_per_min, rate), drawn)) if rate else None
    return {
        "rate_per_min": rate,
        "configured_per_min": raw.get("configured_per_min"),
        "used_per_min": round(used_per_min, 1),
        "level_pct": level_pct,
        "in_use_pct": None if in_use is None else round(in_use, 1),
        "headroom_pct": None if in_use is None else round(max(0.0, 100.0 - in_use), 1),
    }


def limiter_headroom(governor: dict[str, Any], per_model: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per pool and dimension: % of the effective rate in use, and which dimension binds."""
    out: dict[str, Any] = {}
    pools = governor.get("pools") or {}
    usage = _usage_by_pool(list(pools), per_model)
    for pool, raw in sorted(pools.items()):
        used = usage[pool]
        dims = {
            dim: _dimension(spec, used[dim])
            for dim, spec in (raw.get("dimensions") or {}).items()
            if dim in DIMENSIONS
        }
        limited = {d: v["in_use_pct"] for d, v in dims.items() if v["in_use_pct"] is not None}
        binding = max(limited, key=lambda d: limited[d]) if limited else None
        if binding is not None and limited[binding] < _BINDING_MIN_PCT:
            binding = None
        paused = raw.get("paused_until_s")
        out[pool] = {
            "paused_for_s": round(paused, 2) if paused else None,
            "binding": "paused" if paused else binding,
            "dimensions": dims,
        }
    return out


def _breakers(governor: dict[str, Any]) -> dict[str, Any]:
    return {
        model: {
            "state": b.get("state"),
            "failures": b.get("failures", 0),
            "retry_in_s": round(b["retry_in_s"], 1) if b.get("retry_in_s") else None,
        }
        for model, b in sorted((governor.get("breakers") or {}).items())
    }


def _cost(metrics: RunMetrics, rates: dict[str, Any], remaining: int) -> dict[str, Any]:
    so_far = metrics.cost_before_usd + metrics.cost_usd
    per_job = metrics.cost_usd / metrics.done if metrics.done else None
    projected = so_far + per_job * remaining if per_job is not None else None
    return {
        "so_far_usd": round(so_far, 6),
        "session_usd": round(metrics.cost_usd, 6),
        "per_hour_usd": rates["cost_per_hour_usd"],
        "average_per_hour_usd": rates["average_cost_per_hour_usd"],
        "per_job_usd": None if per_job is None else round(per_job, 8),
        "projected_total_usd": None if projected is None else round(projected, 6),
    }


def _workers(workers: list[dict[str, Any]], restarts: int) -> dict[str, Any]:
    rows = [
        {
            "id": int(w.get("id", 0)),
            "pid": w.get("pid"),
            "alive": bool(w.get("alive", False)),
            "jobs": int(w.get("jobs", 0)),
        }
        for w in workers
    ]
    return {"count": len(rows), "alive": sum(r["alive"] for r in rows), "restarts": restarts, "list": rows}


def _errors(metrics: RunMetrics, rates: dict[str, Any]) -> dict[str, Any]:
    return {
        "window_s": rates["error_window_s"],
        "error_rate_pct": rates["error_rate_pct"],
        "attempts": rates["attempts"],
        "failed_attempts": rates["failed_attempts"],
        "rate_limited_recent": rates["rate_limited"],
        "rate_limited": metrics.rate_limited,
        "retries": metrics.retried_attempts,
        "by_type": dict(metrics.errors_by_type.most_common()),
        "failures_by_type": dict(metrics.final_errors_by_type.most_common()),
        "last_failures": list(metrics.last_failures),
        "last_error": metrics.last_error,
    }


def build_snapshot(
    *,
    run_id: str,
    batch_path: str,
    state: str,
    started_wall: float,
    metrics: RunMetrics,
    now: float,
    in_flight: int,
    agent_limit: int,
    agent_min: int,
    agent_max: int,
    queue_depth: int,
    pending: int,
    workers: list[dict[str, Any]],
    worker_restarts: int,
    governor: dict[str, Any],
    alerts: list[dict[str, Any]],
    paused: bool,
) -> dict[str, Any]:
    """The run's state at `now` (monotonic, the metrics' clock) as one JSON-able dict."""
    elapsed = max(0.0, now - metrics.started_at)
    rates = metrics.rates(now)
    done = metrics.done + metrics.already_done
    total = max(metrics.total, done)
    remaining = max(0, total - done)
    jobs_per_s = rates["jobs_per_s"]
    eta = 0.0 if remaining == 0 else (round(remaining / jobs_per_s, 1) if jobs_per_s > 0 else None)
    return {
        "version": SNAPSHOT_VERSION,
        "run_id": run_id,
        "batch_path": batch_path,
        "state": state,
        "paused": paused,
        "started_at": round(started_wall, 3),
        "updated_at": round(started_wall + elapsed, 3),
        "elapsed_s": round(elapsed, 3),
        "counts": {
            "total": total,
            "done": done,
            "succeeded": metrics.succeeded,
            "failed": metrics.failed,
            "pending": pending,
            "in_flight": in_flight,
        },
        "progress_pct": _pct(done, total) if total else 100.0,
        "eta_s": eta,
        "throughput": {
            "window_s": rates["window_s"],
            "jobs_per_s": jobs_per_s,
            "requests_per_min": rates["requests_per_min"],
            "jobs_per_s_overall": round(metrics.done / elapsed, 3) if elapsed > 0 else 0.0,
        },
        "latency_s": {
            "count": metrics.latency.count,
            **metrics.latency.percentiles(),
            "recent_p95": rates["recent_p95_s"],
        },
        "latency_by_model_s": metrics.latency_by_model_summary(),
        "errors": _errors(metrics, rates),
        "agents": {
            "in_flight": in_flight,
            "limit": agent_limit,
            "min": agent_min,
            "max": agent_max,
            "utilisation_pct": _pct(in_flight, agent_limit),
        },
        "workers": _workers(workers, worker_restarts),
        "queue": {"ready": queue_depth, "pending": pending},
        "queue_depth": queue_depth,
        "limits": limiter_headroom(governor, rates["per_model"]),
        "breakers": _breakers(governor),
        "budget": dict(governor.get("budget") or {}),
        "cost": _cost(metrics, rates, remaining),
        "tokens": {
            "input": metrics.input_tokens,
            "output": metrics.output_tokens,
            "cache_read": metrics.cache_read_tokens,
            "cache_write": metrics.cache_write_tokens,
        },
        "alerts": list(alerts),
        "metrics": metrics.summary(now),
        "governor": governor,
    }
