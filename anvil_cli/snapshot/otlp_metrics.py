"""Anvil's own run metrics over OTLP/HTTP (docs/telemetry.md, "Anvil's metrics"): the snapshot
that feeds `GET /metrics` (`views/api/prom.py`), read by observable instruments each time the
meter provider collects (every `OTEL_METRIC_EXPORT_INTERVAL`, and once more as the run ends).
The names are `/metrics`' (an OpenTelemetry-to-Prometheus pipeline shows the same series:
counters with `_total`), each a figure of the same snapshot key.

On only when the driver's `OTEL_*` variables give metrics an endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, not
`OTEL_METRICS_EXPORTER=none` or `OTEL_SDK_DISABLED=true`) and the `otel` extra is installed;
else `exporter()` is None and nothing of OpenTelemetry is imported. The monitor feeds it each
tick (`update`) and flushes it on the run's last tick (`ended`): a collector that is down costs
the run at most one export's time limit there, never a failure."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from anvil_cli.engine.worker import trace_setup
from anvil_cli.snapshot.types import Snapshot

JOB_STATES = ("succeeded", "failed", "pending", "running")
Points = Iterator[tuple[float, dict[str, str]]]  # (value, attributes) of one instrument


def _jobs(s: Snapshot) -> Points:
    for state in JOB_STATES:
        yield float(s["counts"][state]), {"state": state}  # type: ignore[literal-required]


def _tokens(s: Snapshot) -> Points:
    for kind in ("input", "output", "cache_read", "cache_write"):
        yield float(s["tokens"][kind]), {"kind": kind}


def _limiter(field: str) -> Callable[[Snapshot], Points]:
    def read(s: Snapshot) -> Points:
        for pool, data in sorted(s["limits"].items()):
            for dim, fields in sorted(data["dimensions"].items()):
                value = fields[field]  # type: ignore[literal-required]
                if value is not None:
                    yield float(value), {"pool": pool, "dimension": dim}

    return read


def _pass_rate(s: Snapshot) -> Points:
    checks: Any = s.get("checks")
    if checks and checks.get("pass_rate") is not None:
        yield float(checks["pass_rate"]), {}


def _one(read: Callable[[Snapshot], float | None]) -> Callable[[Snapshot], Points]:
    def points(s: Snapshot) -> Points:
        value = read(s)
        if value is not None:
            yield float(value), {}

    return points


# (name, kind: counter | gauge, unit, description, the points of a snapshot)
METRICS: tuple[tuple[str, str, str, str, Callable[[Snapshot], Points]], ...] = (
    ("anvil_jobs", "gauge", "{job}", "Jobs of this run by state.", _jobs),
    ("anvil_run_jobs", "gauge", "{job}", "Jobs in this run.", _one(lambda s: s["counts"]["total"])),
    (
        "anvil_run_cost_usd",
        "gauge",
        "USD",
        "Cost of the whole run so far.",
        _one(lambda s: s["cost"]["so_far_usd"]),
    ),
    (
        "anvil_cost_usd",
        "counter",
        "USD",
        "Cost of this session's calls.",
        _one(lambda s: s["cost"]["session_usd"]),
    ),
    ("anvil_tokens", "counter", "{token}", "Tokens by kind, this session.", _tokens),
    (
        "anvil_api_calls",
        "counter",
        "{request}",
        "API calls made (answered and failed), this session.",
        _one(lambda s: s["errors"]["api_calls"]),
    ),
    (
        "anvil_rate_limited",
        "counter",
        "{request}",
        "API calls answered 429, this session.",
        _one(lambda s: s["errors"]["rate_limited"]),
    ),
    (
        "anvil_requests_per_minute",
        "gauge",
        "{request}/min",
        "API calls per minute, recent.",
        _one(lambda s: s["throughput"]["requests_per_min"]),
    ),
    (
        "anvil_agents_in_flight",
        "gauge",
        "{job}",
        "Jobs being worked on now.",
        _one(lambda s: s["agents"]["in_flight"]),
    ),
    ("anvil_queue_depth", "gauge", "{job}", "Jobs in the ready queue.", _one(lambda s: s["queue"]["ready"])),
    (
        "anvil_limiter_in_use_percent",
        "gauge",
        "%",
        "Share of the rate limit in use.",
        _limiter("in_use_pct"),
    ),
    (
        "anvil_limiter_headroom_percent",
        "gauge",
        "%",
        "Share of the rate limit left.",
        _limiter("headroom_pct"),
    ),
    ("anvil_checks_pass_rate", "gauge", "1", "Checked jobs whose every check passed (0-1).", _pass_rate),
    (
        "anvil_eta_seconds",
        "gauge",
        "s",
        "Time left at the recent completion rate.",
        _one(lambda s: s["eta_s"]),
    ),
)


class OtlpMetrics:
    """The run's metrics over OTLP: `update(snapshot)` each tick, `ended()` on the last."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation

        self.provider = provider
        self.snapshot: Snapshot | None = None
        meter = provider.get_meter(trace_setup.SCOPE)

        def callback(read: Callable[[Snapshot], Points]) -> Callable[[CallbackOptions], list[Observation]]:
            def observe(_options: CallbackOptions) -> list[Observation]:
                snap = self.snapshot
                return [] if snap is None else [Observation(v, dict(a)) for v, a in read(snap)]

            return observe

        for name, kind, unit, doc, read in METRICS:
            make = meter.create_observable_counter if kind == "counter" else meter.create_observable_gauge
            make(name, [callback(read)], unit, doc)

    def update(self, snapshot: Snapshot) -> None:
        """The tick's snapshot: what the next collection reads."""
        self.snapshot = snapshot

    def ended(self) -> None:
        """Send the final figures now and stop (the run's last tick)."""
        with contextlib.suppress(Exception):  # a collector that is down must not fail the run
            self.provider.shutdown()


def exporter(env: dict[str, str] | None = None) -> OtlpMetrics | None:
    """The run's OTLP metrics when the driver's `OTEL_*` ask for them (None: off)."""
    env = dict(trace_setup.otel_environment()) if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if not trace_setup.metrics_wanted(env) or trace_setup.missing_extra():
        return None
    return OtlpMetrics(trace_setup.make_meter_provider(env))
