"""A real OTLP/HTTP receiver for the OpenTelemetry tests (tests/test_otel*.py, tests/on_ray): it
listens on 127.0.0.1, decodes every export with opentelemetry-proto and keeps the spans and metric
points that arrive, as plain dicts and tuples the tests read."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


def need_otel() -> None:
    """Skip unless the otel extra and opentelemetry-proto are installed."""
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="the otel extra is not installed")
    pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto is not installed")


def attrs(kv: Any) -> dict[str, Any]:
    """OTLP key-values as a dict (arrays as lists)."""
    out: dict[str, Any] = {}
    for a in kv:
        v = a.value
        kind = v.WhichOneof("value")
        if kind == "array_value":
            out[a.key] = [getattr(x, x.WhichOneof("value")) for x in v.array_value.values]
        else:
            out[a.key] = getattr(v, kind) if kind else None
    return out


class Receiver:
    """An OTLP/HTTP traces and metrics receiver on 127.0.0.1: every span that arrives, decoded;
    histogram points as (name, attributes, sum, count) in `points`; gauge and sum points as
    (name, attributes, value, unit) in `values`, in the order they arrived."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.points: list[tuple[str, dict[str, Any], float, int]] = []
        self.values: list[tuple[str, dict[str, Any], float, str]] = []
        self.resources: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                (receiver._metrics if self.path == "/v1/metrics" else receiver._traces)(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _metrics(self, body: bytes) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for p in m.histogram.data_points:
                        self.points.append((m.name, attrs(p.attributes), p.sum, p.count))
                    for q in [*m.gauge.data_points, *m.sum.data_points]:
                        number = q.as_double if q.WhichOneof("value") == "as_double" else q.as_int
                        self.values.append((m.name, attrs(q.attributes), float(number), m.unit))

    def _traces(self, body: bytes) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
            self.resources.append(attrs(rs.resource.attributes))
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        {
                            "name": s.name,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(),
                            "kind": s.kind,
                            "status": s.status.code,
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "attributes": attrs(s.attributes),
                            "events": [(e.name, attrs(e.attributes)) for e in s.events],
                            "links": [(x.trace_id.hex(), x.span_id.hex()) for x in s.links],
                        }
                    )

    def last(self, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
        """The last value that arrived of gauge or sum `name`, by its attributes (sorted pairs)."""
        out: dict[tuple[tuple[str, Any], ...], float] = {}
        for metric, attributes, value, _unit in self.values:
            if metric == name:
                out[tuple(sorted(attributes.items()))] = value
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def by_job(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every span but the run's and the batches' (`anvil ...`), under the job whose trace it is in
    (a span in no job's trace fails the test)."""
    roots = {
        s["trace_id"]: s["attributes"]["gen_ai.conversation.id"]
        for s in spans
        if s["name"].startswith("invoke_agent")
    }
    out: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        if not s["name"].startswith("anvil "):
            out.setdefault(roots[s["trace_id"]], []).append(s)
    return out
