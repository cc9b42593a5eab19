"""Whether a run is traced and the tracer provider that sends its spans (docs/telemetry.md).

Only the standard `OTEL_*` variables decide, the driver's: traces are on when
`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, unless
`OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true`; spans go over OTLP/HTTP, from a service
named `OTEL_SERVICE_NAME` ("anvil" by default). Asked for without the `otel` extra, the run says
so once and goes on untraced.

The driver's one span is the run's, `anvil run {batch}`: its W3C `traceparent` goes to every
worker (`WorkerConfig.otel_link`), whose job spans (`telemetry.py`) each start a trace of their
own, linked to it; in `--mode batches` the driver makes its batches' spans itself, with the run
span's tracer (`run_tracer()`). Nothing here imports OpenTelemetry until traces are on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

EXTRA_HINT = "pip install 'anvil-cli[otel]'"
SCOPE = "anvil_cli"
# an export's time limit unless OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT sets one (the SDK's is 10 s):
# what a collector that is down costs each worker, and the driver, as it ends
EXPORT_TIMEOUT_S = 3.0

_run_link = ""  # the run span's traceparent while the driver's run span is open
_run: tuple[Any, Any, Any] | None = None  # (its tracer, span, provider) meanwhile: the driver's spans


def otel_environment(environ: Mapping[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """The `OTEL_*` variables of `environ` (this process's): what the driver gives its workers."""
    env = os.environ if environ is None else environ
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith("OTEL_")))


def wanted(env: Mapping[str, str]) -> bool:
    """Whether these variables ask for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def missing_extra() -> bool:
    """Whether the `otel` extra is not installed (asked without importing it)."""
    try:
        return any(
            importlib.util.find_spec(name) is None
            for name in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
        )
    except ModuleNotFoundError:  # not even `opentelemetry`
        return True


def warning_if_unavailable(env: Mapping[str, str]) -> str | None:
    """The one warning for a run whose variables ask for traces the extra is missing for."""
    if wanted(env) and missing_extra():
        return (
            f"OTEL_* variables ask for traces, but OpenTelemetry is not installed ({EXTRA_HINT}); "
            "running without them"
        )
    return None


def traced(env: Mapping[str, str]) -> bool:
    """Whether a process with these variables makes spans."""
    return wanted(env) and not missing_extra()


def make_provider(env: Mapping[str, str]) -> Any:
    """A tracer provider sending spans over OTLP/HTTP as `env` says (its exporter, sampler and
    batch processor read the rest of `OTEL_*` from this process's environment)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "anvil"})
    provider = TracerProvider(resource=resource)
    timeout_s = (
        None
        if {"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"} & set(env)
        else EXPORT_TIMEOUT_S
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(timeout=timeout_s)))
    return provider


def metrics_wanted(env: Mapping[str, str]) -> bool:
    """Whether a traced process also sends the GenAI client metrics: when the variables give
    them an endpoint and `OTEL_METRICS_EXPORTER` is not `none`."""
    if env.get("OTEL_METRICS_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))


def make_meter_provider(env: Mapping[str, str]) -> Any:
    """A meter provider sending metrics over OTLP/HTTP (every `OTEL_METRIC_EXPORT_INTERVAL`, and
    when it is shut down)."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    timeout = {"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"} & set(env)
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(timeout=None if timeout else EXPORT_TIMEOUT_S))
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "anvil"})
    return MeterProvider(
        metric_readers=[reader], resource=resource, shutdown_on_exit=False
    )  # its owner shuts it


@contextlib.contextmanager
def run_span(run_id: str, batch: str) -> Iterator[None]:
    """The driver's `anvil run {batch}` span around a run with workers; `run_link()` is its
    traceparent meanwhile. Untraced, nothing (with the warning when the extra is missing)."""
    global _run_link, _run
    env = dict(otel_environment())
    if (warning := warning_if_unavailable(env)) is not None:
        print(f"anvil: warning: {warning}", file=sys.stderr)
    if not traced(env):
        yield
        return
    from opentelemetry.trace import SpanKind, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    provider = make_provider(env)
    attributes = {"anvil.run.id": run_id, "anvil.batch": batch}
    span = provider.get_tracer(SCOPE).start_span(
        f"anvil run {batch}", kind=SpanKind.INTERNAL, attributes=attributes
    )
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, set_span_in_context(span))
    _run_link = carrier.get("traceparent", "")
    _run = (provider.get_tracer(SCOPE), span, provider)
    try:
        yield
    finally:
        _run_link, _run = "", None
        span.end()
        with contextlib.suppress(Exception):  # a collector that is down must not fail the run
            provider.shutdown()


def run_link() -> str:
    """The open run span's W3C traceparent ("" when the run is not traced)."""
    return _run_link


def run_tracer() -> tuple[Any, Any] | None:
    """(the tracer, the run span) while the driver's run span is open and traced: for the spans
    the driver makes itself (Message Batches mode); None otherwise."""
    return None if _run is None else _run[:2]


def flush_run() -> bool:
    """Send the driver's queued spans now (its queue holds 2048 by default: a big batch's spans
    are sent as they are made, not dropped); False when the collector did not take them."""
    if _run is None:
        return True
    try:
        return bool(_run[2].force_flush(int(EXPORT_TIMEOUT_S * 1000)))
    except Exception:  # a collector that is down must not fail the run
        return False


def link_of(traceparent: str) -> Any:
    """The span context a job span links to, from the run's `traceparent` (None: no run span)."""
    if not traceparent:
        return None
    from opentelemetry.trace import get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    span_context = get_current_span(context).get_span_context()
    return span_context if span_context.is_valid else None
