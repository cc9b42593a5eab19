"""`GET /metrics`: a run's status rendered in the Prometheus text format.

Tolerant by design: any key missing from the status (or of the wrong type) just leaves its
metric out, so the status can grow without breaking the scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # text/plain; version=0.0.4; charset=utf-8
JOB_STATES = ("succeeded", "failed", "pending", "running")
SEVERITIES = ("info", "warning", "critical")
QUANTILES = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))
LIMITER_FIELDS = (
    ("level", "level", "Tokens (or requests) available now in the bucket."),
    ("capacity", "capacity", "Bucket capacity (burst size)."),
    ("rate_per_minute", "rate_per_min", "Refill rate in effect (lowered by the server's headers)."),
    ("configured_per_minute", "configured_per_min", "Refill rate configured."),
    ("reserved_in_flight", "reserved_in_flight", "Amount reserved by calls in flight."),
)
GAUGES = (  # (metric name, path in the status, help)
    ("anvil_jobs_per_second", ("metrics", "recent_jobs_per_s"), "Jobs finished per second, recent window."),
    ("anvil_run_jobs_per_second", ("metrics", "jobs_per_s"), "Jobs finished per second since the start."),
    ("anvil_requests_per_minute", ("metrics", "recent_requests_per_min"), "API calls per minute, recent."),
    ("anvil_error_rate_percent", ("metrics", "recent_error_rate_pct"), "Failed API calls, recent (%)."),
    ("anvil_cost_per_hour_usd", ("metrics", "cost_per_hour_usd"), "Spend rate (USD per hour)."),
    ("anvil_run_jobs", ("counts", "total"), "Jobs in this run."),
    ("anvil_agents_in_flight", ("agents", "in_flight"), "Jobs being worked on now."),
    ("anvil_agents_limit", ("agents", "limit"), "Concurrent agents allowed now."),
    ("anvil_agents_min", ("agents", "min"), "Lowest agent limit allowed."),
    ("anvil_agents_max", ("agents", "max"), "Highest agent limit allowed."),
    ("anvil_queue_depth", ("queue_depth",), "Jobs in the ready queue."),
    ("anvil_governor_calls_in_flight", ("governor", "in_flight"), "API calls admitted and not yet settled."),
    ("anvil_paused", ("paused",), "1 while dispatching is paused."),
    ("anvil_budget_spent_usd", ("governor", "budget", "spent_usd"), "Spend settled so far (USD)."),
    ("anvil_budget_reserved_usd", ("governor", "budget", "reserved_usd"), "Worst-case cost reserved (USD)."),
    ("anvil_budget_max_usd", ("governor", "budget", "max_usd"), "Spend cap (USD)."),
    ("anvil_budget_warn_usd", ("governor", "budget", "warn_usd"), "Spend warning level (USD)."),
)
COUNTERS = (  # exposed with a `_total` suffix
    ("anvil_attempts", ("metrics", "attempts"), "API calls made."),
    ("anvil_retries", ("metrics", "retries"), "API calls that were retries."),
    ("anvil_rate_limited", ("metrics", "rate_limited"), "API calls answered 429."),
    ("anvil_cost_usd", ("metrics", "cost_usd"), "Cost of this session's calls (USD)."),
    ("anvil_worker_restarts", ("worker_restarts",), "Worker processes replaced after dying."),
)


def render(status: Mapping[str, Any]) -> bytes:
    """The Prometheus text exposition (version 0.0.4) of one status snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return generate_latest(registry)


def number(value: Any) -> float | None:
    """A metric value from a status field; None for anything that is not a number."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def dig(data: Any, *path: str) -> Any:
    """`data[a][b]...`, or None where a level is missing or not a mapping."""
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def items(data: Any) -> Iterable[tuple[str, Any]]:
    """The (str key, value) pairs of a mapping; nothing for anything else."""
    if not isinstance(data, Mapping):
        return ()
    return ((str(k), v) for k, v in data.items())


class StatusCollector:
    """A prometheus_client collector over one status snapshot."""

    def __init__(self, status: Mapping[str, Any]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        yield from self._run()
        yield from self._plain()
        yield from self._labelled_metrics()
        yield from self._limiter()
        yield from self._breakers()
        yield self._alerts()

    def _run(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "anvil_run_info", "The run being served (always 1).", labels=["run_id", "state"]
        )
        info.add_metric([str(self.status.get("run_id", "")), str(self.status.get("state", ""))], 1.0)
        yield info
        jobs = GaugeMetricFamily("anvil_jobs", "Jobs of this run by state.", labels=["state"])
        for state in JOB_STATES:
            value = number(dig(self.status, "counts", state))
            if value is not None:
                jobs.add_metric([state], value)
        yield jobs
        workers = self.status.get("workers")
        if isinstance(workers, list):
            alive = sum(1 for w in workers if dig(w, "alive") is True)
            yield GaugeMetricFamily("anvil_workers_alive", "Worker processes alive.", value=float(alive))

    def _plain(self) -> Iterator[Metric]:
        for name, path, doc in GAUGES:
            value = number(dig(self.status, *path))
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)
        for name, path, doc in COUNTERS:
            value = number(dig(self.status, *path))
            if value is not None:
                yield CounterMetricFamily(name, doc, value=value)

    def _labelled_metrics(self) -> Iterator[Metric]:
        metrics = self.status.get("metrics")
        latency = GaugeMetricFamily(
            "anvil_latency_seconds", "Job latency quantiles (recent jobs).", labels=["quantile"]
        )
        for quantile, key in QUANTILES:
            value = number(dig(metrics, "latency_s", key))
            if value is not None:
                latency.add_metric([quantile], value)
        yield latency
        errors = CounterMetricFamily("anvil_errors", "Failed API calls by error type.", labels=["type"])
        for kind, n in items(dig(metrics, "errors_by_type")):
            if (value := number(n)) is not None:
                errors.add_metric([kind], value)
        yield errors
        tokens = CounterMetricFamily("anvil_tokens", "Tokens by kind.", labels=["kind"])
        for kind, n in items(dig(metrics, "tokens")):
            if (value := number(n)) is not None:
                tokens.add_metric([kind], value)
        yield tokens

    def _limiter(self) -> Iterator[Metric]:
        pools = list(items(dig(self.status, "governor", "pools")))
        for suffix, key, doc in LIMITER_FIELDS:
            family = GaugeMetricFamily(f"anvil_limiter_{suffix}", doc, labels=["pool", "dimension"])
            for pool, data in pools:
                for dim, fields in items(dig(data, "dimensions")):
                    value = number(dig(fields, key))
                    if value is not None:
                        family.add_metric([pool, dim], value)
            yield family
        paused = GaugeMetricFamily(
            "anvil_limiter_pause_remaining_seconds",
            "Seconds a pool stays paused after a 429.",
            labels=["pool"],
        )
        for pool, data in pools:
            paused.add_metric([pool], number(dig(data, "paused_until_s")) or 0.0)
        yield paused

    def _breakers(self) -> Iterator[Metric]:
        breakers = list(items(dig(self.status, "governor", "breakers")))
        is_open = GaugeMetricFamily(
            "anvil_breaker_open", "1 while a model's circuit breaker is open.", labels=["model", "state"]
        )
        failures = GaugeMetricFamily(
            "anvil_breaker_failures", "Consecutive failures counted by the breaker.", labels=["model"]
        )
        for model, data in breakers:
            state = str(dig(data, "state") or "unknown")
            is_open.add_metric([model, state], 1.0 if state == "open" else 0.0)
            if (value := number(dig(data, "failures"))) is not None:
                failures.add_metric([model], value)
        yield is_open
        yield failures

    def _alerts(self) -> Metric:
        active = dict.fromkeys(SEVERITIES, 0)
        alerts = self.status.get("alerts")
        for alert in alerts if isinstance(alerts, list) else ():
            severity = str(dig(alert, "severity") or "unknown")
            active[severity] = active.get(severity, 0) + 1
        family = GaugeMetricFamily(
            "anvil_alerts_active", "Alerts active now, by severity.", labels=["severity"]
        )
        for severity, n in active.items():
            family.add_metric([severity], float(n))
        return family
