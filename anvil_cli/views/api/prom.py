"""`GET /metrics`: the run snapshot in the Prometheus text format, through `prometheus_client`.

Reads only the typed snapshot (`anvil_cli.snapshot.types`), the same value `GET /status`,
`anvil status --json` and the dashboard show. Before the run's first snapshot (the first second
of a run) there is nothing to measure yet: only `anvil_run_info` is exposed.

Counters count this session (since `anvil run` started): a resumed run starts them again, which
Prometheus' `rate()` and `increase()` handle as a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from anvil_cli.snapshot.build import snapshot_of
from anvil_cli.snapshot.types import Dimension, HistogramData, Snapshot
from anvil_cli.views.api.prom_checks import checks_metrics

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # text/plain; version=0.0.4; charset=utf-8
JOB_STATES: Final = ("succeeded", "failed", "pending", "running")
SEVERITIES: Final = ("high", "medium", "low")
BREAKER_STATES: Final = ("closed", "half_open", "open")


def render(status: Mapping[str, Any], connection_errors: int | None = None) -> bytes:
    """The Prometheus text exposition (version 0.0.4) of a run's status (`GET /status`), and the
    API server's own count of `connection_errors` when given."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(status))
    if connection_errors is not None:
        registry.register(_ConnectionErrors(connection_errors))
    return generate_latest(registry)


class _ConnectionErrors:
    """The API server's counter (`api.guard.ErrorTally`): not the run's, the server's own."""

    def __init__(self, total: int) -> None:
        self.total = total

    def collect(self) -> Iterator[Metric]:
        doc = "Connections the HTTP API closed on an error (unparseable request, no descriptor, reset)."
        yield _counter("anvil_api_connection_errors", doc, self.total)


def _gauge(name: str, doc: str, value: float | None) -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(name, doc, value=float(value))


def _counter(name: str, doc: str, value: float) -> Metric:
    return CounterMetricFamily(name, doc, value=float(value))  # exposed as `<name>_total`


def _by_label(family: GaugeMetricFamily | CounterMetricFamily, values: Mapping[str, float]) -> Metric:
    for label, value in sorted(values.items()):
        family.add_metric([label], float(value))
    return family


class SnapshotCollector:
    """A prometheus_client collector over one status (a snapshot plus the run's own fields)."""

    def __init__(self, status: Mapping[str, Any]) -> None:
        self.status = status
        self.snap = snapshot_of(status)

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "anvil_run_info", "The run being served (always 1).", labels=["run_id", "state"]
        )
        info.add_metric([str(self.status.get("run_id", "")), str(self.status.get("state", ""))], 1.0)
        yield info
        s = self.snap
        if s is None:
            return
        yield from _jobs(s)
        yield from _calls(s)
        yield from _latency(s)
        yield from _cost(s)
        yield from _agents(s)
        yield from _limiter(s)
        yield from _breakers(s)
        yield from _alerts(s)
        yield from _endpoints(self.status.get("endpoints") or {})
        yield from checks_metrics(self.status.get("checks"))


def _jobs(s: Snapshot) -> Iterator[Metric]:
    c = s["counts"]
    jobs = GaugeMetricFamily("anvil_jobs", "Jobs of this run by state.", labels=["state"])
    yield _by_label(jobs, {state: c[state] for state in JOB_STATES})
    yield GaugeMetricFamily("anvil_run_jobs", "Jobs in this run.", value=c["total"])
    yield from _gauge("anvil_eta_seconds", "Time left at the recent completion rate.", s["eta_s"])
    t = s["throughput"]
    yield GaugeMetricFamily(
        "anvil_jobs_per_second", "Jobs finished per second, recent.", value=t["jobs_per_s"]
    )
    yield GaugeMetricFamily(
        "anvil_run_jobs_per_second",
        "Jobs finished per second since the start.",
        value=t["jobs_per_s_overall"],
    )
    yield GaugeMetricFamily("anvil_queue_depth", "Jobs in the ready queue.", value=s["queue"]["ready"])
    yield GaugeMetricFamily("anvil_paused", "1 while dispatching is paused.", value=float(s["paused"]))
    failures = CounterMetricFamily("anvil_job_failures", "Failed jobs by their final error.", labels=["type"])
    yield _by_label(failures, s["errors"]["failures_by_type"])


def _calls(s: Snapshot) -> Iterator[Metric]:
    e = s["errors"]
    yield _counter("anvil_api_calls", "API calls made (answered and failed).", e["api_calls"])
    errors = CounterMetricFamily("anvil_api_call_errors", "Failed API calls by error type.", labels=["type"])
    yield _by_label(errors, e["by_type"])
    retries = CounterMetricFamily(
        "anvil_retries", "API calls retried, by the error that caused the retry.", labels=["type"]
    )
    yield _by_label(retries, e["retries_by_type"])
    yield _counter("anvil_rate_limited", "API calls answered 429.", e["rate_limited"])
    tools = CounterMetricFamily(
        "anvil_tool_errors", "Failed tool calls of finished jobs, by kind.", labels=["kind"]
    )
    yield _by_label(tools, e.get("tool_errors_by_kind", {}))  # absent from an older Anvil's snapshot
    yield GaugeMetricFamily(
        "anvil_requests_per_minute",
        "API calls per minute, recent.",
        value=s["throughput"]["requests_per_min"],
    )
    yield GaugeMetricFamily(
        "anvil_error_rate_percent",
        "Failed API calls of all calls, last minute (%).",
        value=e["error_rate_pct"],
    )


def _histogram(name: str, doc: str, bounds: list[float], by_model: Mapping[str, HistogramData]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=["model"])
    for model, h in sorted(by_model.items()):
        buckets = [(repr(float(b)), float(n)) for b, n in zip(bounds, h["cumulative"], strict=True)]
        buckets.append(("+Inf", float(h["count"])))
        family.add_metric([model], buckets, sum_value=h["sum"])
    return family


def _latency(s: Snapshot) -> Iterator[Metric]:
    h = s["histograms"]
    yield _histogram(
        "anvil_call_latency_seconds",
        "API call latency: request to answer of each call, by model.",
        h["bounds_s"],
        h["call_latency"],
    )
    yield _histogram(
        "anvil_job_duration_seconds",
        "Job time: start to result, with rate-limiter waits and retries, by model.",
        h["bounds_s"],
        h["job_time"],
    )


def _cost(s: Snapshot) -> Iterator[Metric]:
    tokens = CounterMetricFamily("anvil_tokens", "Tokens by kind.", labels=["kind"])
    t = s["tokens"]
    kinds = {
        "input": t["input"],
        "output": t["output"],
        "cache_read": t["cache_read"],
        "cache_write": t["cache_write"],
    }
    yield _by_label(tokens, kinds)
    c, b = s["cost"], s["budget"]
    yield _counter("anvil_cost_usd", "Cost of this session's calls (USD).", c["session_usd"])
    yield GaugeMetricFamily(
        "anvil_run_cost_usd", "Cost of the whole run so far (USD).", value=c["so_far_usd"]
    )
    yield GaugeMetricFamily(
        "anvil_cost_per_hour_usd", "Spend rate, recent (USD per hour).", value=c["per_hour_usd"]
    )
    yield GaugeMetricFamily("anvil_budget_spent_usd", "Spend settled so far (USD).", value=b["spent_usd"])
    yield GaugeMetricFamily(
        "anvil_budget_reserved_usd", "Worst-case cost reserved (USD).", value=b["reserved_usd"]
    )
    yield from _gauge("anvil_budget_max_usd", "Spend cap (USD).", b["max_usd"])
    yield from _gauge("anvil_budget_warn_usd", "Spend warning level (USD).", b["warn_usd"])
    yield from _scopes((s.get("governor") or {}).get("scopes") or [])


def _scopes(lines: list[dict[str, Any]]) -> Iterator[Metric]:
    """Each cap of `budget.scopes` and the state dir's windows (none unless set)."""
    if not lines:
        return
    labels = ["scope", "window"]
    spent = GaugeMetricFamily(
        "anvil_budget_scope_spent_usd", "Spent under a scope's cap this period (USD).", labels=labels
    )
    cap = GaugeMetricFamily("anvil_budget_scope_cap_usd", "A scope's cap (USD).", labels=labels)
    for line in lines:
        spent.add_metric([line["scope"], line["window"]], line["spent_usd"])
        cap.add_metric([line["scope"], line["window"]], line["cap_usd"])
    yield spent
    yield cap


def _agents(s: Snapshot) -> Iterator[Metric]:
    a, w = s["agents"], s["workers"]
    yield GaugeMetricFamily("anvil_agents_in_flight", "Jobs being worked on now.", value=a["in_flight"])
    yield GaugeMetricFamily("anvil_agents_limit", "Concurrent agents allowed now.", value=a["limit"])
    yield GaugeMetricFamily("anvil_agents_min", "Lowest agent limit allowed.", value=a["min"])
    yield GaugeMetricFamily("anvil_agents_max", "Highest agent limit allowed.", value=a["max"])
    yield GaugeMetricFamily(
        "anvil_agents_draining", "Jobs in flight above a lowered agent limit.", value=a["draining"]
    )
    yield GaugeMetricFamily("anvil_workers", "Worker processes.", value=w["count"])
    yield GaugeMetricFamily("anvil_workers_alive", "Worker processes alive.", value=w["alive"])
    yield _counter("anvil_worker_restarts", "Worker processes replaced after dying.", w["restarts"])
    in_flight = s["governor"].get("in_flight")
    if isinstance(in_flight, int | float):
        yield GaugeMetricFamily(
            "anvil_governor_calls_in_flight", "API calls admitted and not yet settled.", value=in_flight
        )


LIMITER_GAUGES: Final[tuple[tuple[str, Callable[[Dimension], float | None], str], ...]] = (
    (
        "in_use_percent",
        lambda d: d["in_use_pct"],
        "Share of the rate limit in use (recent use or drawn down, %).",
    ),
    (
        "used_per_minute",
        lambda d: d["used_per_min"],
        "Recent use per minute by the models drawing from the pool.",
    ),
    (
        "rate_per_minute",
        lambda d: d["rate_per_min"],
        "Refill rate in effect (lowered by the server's headers).",
    ),
    ("configured_per_minute", lambda d: d["configured_per_min"], "Refill rate configured."),
    ("level", lambda d: d["level"], "Tokens (or requests) available now in the bucket."),
    ("capacity", lambda d: d["capacity"], "Bucket capacity (burst size)."),
    ("reserved_in_flight", lambda d: d["reserved_in_flight"], "Amount reserved by calls in flight."),
)


def _limiter(s: Snapshot) -> Iterator[Metric]:
    pools = sorted(s["limits"].items())
    for suffix, read, doc in LIMITER_GAUGES:
        family = GaugeMetricFamily(f"anvil_limiter_{suffix}", doc, labels=["pool", "dimension"])
        for pool, data in pools:
            for dim, fields in sorted(data["dimensions"].items()):
                value = read(fields)
                if value is not None:
                    family.add_metric([pool, dim], float(value))
        yield family
    binding = GaugeMetricFamily(
        "anvil_limiter_binding",
        "1 for the dimension that holds the pool back now.",
        labels=["pool", "dimension"],
    )
    paused = GaugeMetricFamily(
        "anvil_limiter_pause_remaining_seconds", "Seconds a pool stays paused after a 429.", labels=["pool"]
    )
    for pool, data in pools:
        if data["binding"] is not None:
            binding.add_metric([pool, data["binding"]], 1.0)
        paused.add_metric([pool], data["paused_for_s"] or 0.0)
    yield binding
    yield paused


def _breakers(s: Snapshot) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "anvil_breaker_state", "1 for each model's circuit breaker state now.", labels=["model", "state"]
    )
    is_open = GaugeMetricFamily(
        "anvil_breaker_open", "1 while a model's circuit breaker is open.", labels=["model"]
    )
    failures = GaugeMetricFamily(
        "anvil_breaker_failures", "Consecutive failures counted by the breaker.", labels=["model"]
    )
    for model, b in sorted(s["breakers"].items()):
        for name in BREAKER_STATES:
            state.add_metric([model, name], 1.0 if b["state"] == name else 0.0)
        is_open.add_metric([model], 1.0 if b["state"] == "open" else 0.0)
        failures.add_metric([model], float(b["failures"]))
    yield state
    yield is_open
    yield failures


def _alerts(s: Snapshot) -> Iterator[Metric]:
    counts = dict.fromkeys(SEVERITIES, 0)
    active = GaugeMetricFamily(
        "anvil_alert_active", "1 for each alert active now.", labels=["name", "severity"]
    )
    for alert in s["alerts"]:
        counts[alert["severity"]] = counts.get(alert["severity"], 0) + 1
        active.add_metric([alert["name"], alert["severity"]], 1.0)
    family = GaugeMetricFamily("anvil_alerts_active", "Alerts active now, by severity.", labels=["severity"])
    yield _by_label(family, counts)
    yield active


# (the status key, the metric, its type, its help) of each named endpoint's figures
ENDPOINT_FIGURES: Final[tuple[tuple[str, str, type[CounterMetricFamily | GaugeMetricFamily], str], ...]] = (
    ("cost_usd", "anvil_endpoint_cost_usd", CounterMetricFamily, "Cost of its calls, whole run (USD)."),
    ("calls", "anvil_endpoint_api_calls", CounterMetricFamily, "Paid API calls to it, whole run."),
    ("errors", "anvil_endpoint_api_call_errors", CounterMetricFamily, "Failed calls of finished jobs."),
    ("rate_limited", "anvil_endpoint_rate_limited", CounterMetricFamily, "429s of finished jobs."),
    ("cost_share_pct", "anvil_endpoint_cost_share_percent", GaugeMetricFamily, "Share of the cost (%)."),
    ("calls_share_pct", "anvil_endpoint_calls_share_percent", GaugeMetricFamily, "Share of the paid calls."),
    ("open_breakers", "anvil_endpoint_breakers_open", GaugeMetricFamily, "Circuit breakers open on it now."),
)


def _endpoints(endpoints: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """A run with named endpoints (`endpoints:`): each one's figures over the whole run, from the
    journal (so they go on across a resume, unlike this session's counters); none without."""
    if not endpoints:
        return
    for key, name, kind, doc in ENDPOINT_FIGURES:
        family = kind(name, f"Each named endpoint: {doc[0].lower()}{doc[1:]}", labels=["endpoint"])
        for endpoint, figures in sorted(endpoints.items()):
            family.add_metric([endpoint], float(figures[key]))
        yield family
