"""OpenTelemetry traces (docs/telemetry.md): a small batch run by the real engine (worker
processes, the governor, the journal) against the simulator, with `OTEL_EXPORTER_OTLP_ENDPOINT`
pointing at an OTLP/HTTP receiver started here, which decodes what arrives with
opentelemetry-proto. Every job is one trace, named and valued per the GenAI conventions, its
figures the journal's, and each links to the driver's run span. (A run without OTEL variables
imports none of OpenTelemetry's SDK: tests/test_backend_choice.py.)"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from anvil_cli.engine.worker import telemetry, trace_setup
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.snapshot import otlp_metrics
from tests.engine_support import journal_query, run_inprocess, write_config, write_jsonl_batch
from tests.otel_support import Receiver, by_job, need_otel

HAIKU = "claude-haiku-4-5"
ECHO = [sys.executable, "-c", "import json,sys; d=json.load(sys.stdin); print('order', d['order_id'])"]
TOOL = {
    "name": "lookup_order",
    "description": "find an order",
    "input_schema": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
    "anvil_command": ECHO,
}
JOBS = [
    {"id": "plain", "prompt": "Say hi"},
    {"id": "retried", "prompt": "@sim{fail=500x2} Say hi"},
    {"id": "throttled", "prompt": "@sim{fail=429x1, retry_after=0} Say hi"},
    {"id": "refused", "prompt": "@sim{status=400} Say hi"},
    {"id": "tooled", "prompt": "Where is my order?", "tools": [TOOL]},
    {
        "id": "checked",
        "prompt": "@sim{score=5} Which city?",
        "checks": [
            {"name": "says-city", "contains": "city"},
            {"name": "right", "judge": {"rubric": "Right?"}},
        ],
    },
]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Receiver, dict[str, dict[str, Any]]]]:
    need_otel()
    receiver = Receiver()
    tmp = tmp_path_factory.mktemp("otel")
    with SimServer(SimConfig(seed=3)).start_thread() as sim, pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        mp.setenv("OTEL_SERVICE_NAME", "anvil-test")
        mp.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        mp.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")  # metrics: once, as each process ends
        mp.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        mp.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")  # each worker's: summed here
        batch = tmp / "batch.yaml"
        batch.write_text(yaml.safe_dump({"defaults": {"model": HAIKU, "max_tokens": 200}, "jobs": JOBS}))
        retries = {"max_attempts": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.01}
        cfg = write_config(tmp / "anvil.yaml", sim.base_url, retries=retries)
        report = run_inprocess(cfg, batch, tmp / "out.jsonl")
        assert report.exit_code == ExitCode.JOBS_FAILED  # "refused" failed
        rows = journal_query(
            tmp / ".anvil",
            "SELECT job_json, cost_usd, usage_json, attempts_json, state, checks_json FROM jobs",
        )
    journal = {
        json.loads(job)["id"]: {
            "cost_usd": cost,
            "usage": json.loads(usage) if usage else None,
            "log": json.loads(log),
            "state": state,
            "checks": json.loads(checks) if checks else None,
        }
        for job, cost, usage, log, state, checks in rows
    }
    receiver.close()
    yield receiver, journal


@pytest.mark.slow
def test_the_run_span_is_the_drivers_and_every_job_links_to_it(
    traced: tuple[Receiver, dict[str, Any]],
) -> None:
    receiver, journal = traced
    (run,) = [s for s in receiver.spans if s["name"] == "anvil run batch.yaml"]
    assert run["parent"] == "" and run["attributes"]["anvil.batch"] == "batch.yaml"
    roots = [s for s in receiver.spans if s["name"].startswith("invoke_agent")]
    assert len(roots) == len(journal)
    for root in roots:
        assert root["trace_id"] != run["trace_id"]  # a trace of its own
        assert root["links"] == [(run["trace_id"], run["span_id"])]
        assert root["attributes"]["anvil.run.id"] == run["attributes"]["anvil.run.id"]


@pytest.mark.slow
def test_each_job_is_one_trace_named_per_the_conventions(traced: tuple[Receiver, dict[str, Any]]) -> None:
    receiver, journal = traced
    jobs = by_job(receiver.spans)
    assert set(jobs) == set(journal) == {j["id"] for j in JOBS}
    assert len({spans[0]["trace_id"] for spans in jobs.values()}) == len(JOBS)  # one trace each
    assert all(r["service.name"] == "anvil-test" for r in receiver.resources)
    for job_id, spans in jobs.items():
        (root,) = [s for s in spans if s["name"] == f"invoke_agent {job_id}"]
        assert root["parent"] == "" and root["kind"] == 1  # a root; INTERNAL
        a = root["attributes"]
        assert a["gen_ai.operation.name"] == "invoke_agent" and a["anvil.run.id"]
        assert a["anvil.job.priority"] == "normal"
        assert a["gen_ai.usage.cost.amount"] == pytest.approx(journal[job_id]["cost_usd"])
        for child in spans:
            if child is not root:
                assert child["parent"] == root["span_id"]  # judges' calls too
        chats = [s for s in spans if s["name"].startswith("chat ")]
        assert len(chats) == len(journal[job_id]["log"])  # a span per call, failed ones included
        for c in chats:
            ca = c["attributes"]
            assert c["kind"] == 3 and c["name"] == f"chat {ca['gen_ai.request.model']}"  # CLIENT
            assert ca["gen_ai.provider.name"] == "anthropic" and ca["server.address"] == "127.0.0.1"
        assert sum(c["attributes"].get("gen_ai.usage.cost.amount", 0.0) for c in chats) == pytest.approx(
            journal[job_id]["cost_usd"]
        )


@pytest.mark.slow
def test_call_spans_carry_the_journals_tokens_and_answer(traced: tuple[Receiver, dict[str, Any]]) -> None:
    receiver, journal = traced
    jobs = by_job(receiver.spans)
    for job_id in ("plain", "retried", "tooled"):
        answered = [
            s["attributes"] for s in jobs[job_id] if s["name"].startswith("chat ") and s["status"] != 2
        ]
        usage = journal[job_id]["usage"]
        sent = (
            usage["input_tokens"]
            + usage.get("cache_read_input_tokens", 0)
            + usage.get("cache_creation_input_tokens", 0)
        )
        assert sum(a["gen_ai.usage.input_tokens"] for a in answered) == sent
        assert sum(a["gen_ai.usage.output_tokens"] for a in answered) == usage["output_tokens"]
        for a in answered:
            assert (
                a["gen_ai.response.id"]
                and a["gen_ai.response.model"]
                and a["gen_ai.request.max_tokens"] == 200
            )
            assert a["gen_ai.response.finish_reasons"] in (["end_turn"], ["tool_use"])
            assert a["gen_ai.usage.cost.currency"] == "USD"
            said = json.loads(a["gen_ai.output.messages"])  # content: the run opted in
            assert said[0]["role"] == "assistant" and said[0]["parts"]
            assert json.loads(a["gen_ai.input.messages"])[0]["role"] == "user"
    values = [str(v) for s in receiver.spans for v in s["attributes"].values()]
    assert not [v for v in values if "test-key" in v]  # the API key never (headers are not recorded)


@pytest.mark.slow
def test_the_genai_client_metrics_count_every_call(traced: tuple[Receiver, dict[str, Any]]) -> None:
    receiver, _ = traced
    chats = [s for s in receiver.spans if s["name"].startswith("chat ")]
    answered = [s["attributes"] for s in chats if s["status"] != 2]
    tokens = {"input": 0.0, "output": 0.0}
    for name, attrs, total, _count in receiver.points:
        if name == "gen_ai.client.token.usage":
            assert attrs["gen_ai.provider.name"] == "anthropic" and attrs["gen_ai.request.model"]
            tokens[attrs["gen_ai.token.type"]] += total
    assert tokens["input"] == sum(a["gen_ai.usage.input_tokens"] for a in answered)
    assert tokens["output"] == sum(a["gen_ai.usage.output_tokens"] for a in answered)
    durations = [
        (attrs, count)
        for name, attrs, _total, count in receiver.points
        if name == "gen_ai.client.operation.duration"
    ]
    assert sum(count for _, count in durations) == len(chats)  # failed calls too, with their error.type
    assert sum(count for attrs, count in durations if "error.type" in attrs) == len(chats) - len(answered)


@pytest.mark.slow
def test_a_retried_call_has_an_error_span_and_a_retry_event(traced: tuple[Receiver, dict[str, Any]]) -> None:
    receiver, _ = traced
    spans = by_job(receiver.spans)["retried"]
    failed = [s for s in spans if s["name"].startswith("chat ") and s["status"] == 2]
    assert failed and all(s["attributes"]["error.type"] == "api_error" for s in failed)
    (root,) = [s for s in spans if s["name"].startswith("invoke_agent")]
    retries = [attrs for name, attrs in root["events"] if name == "anvil.retry"]
    assert len(retries) == len(failed) and all(r["error.type"] == "api_error" for r in retries)


@pytest.mark.slow
def test_a_failed_job_has_an_error_status(traced: tuple[Receiver, dict[str, Any]]) -> None:
    receiver, _ = traced
    spans = by_job(receiver.spans)["refused"]
    (root,) = [s for s in spans if s["name"].startswith("invoke_agent")]
    assert root["status"] == 2 and root["attributes"]["error.type"] == "invalid_request_error"
    (call,) = [s for s in spans if s["name"].startswith("chat ")]
    assert call["status"] == 2 and call["attributes"]["error.type"] == "invalid_request_error"


@pytest.mark.slow
def test_tools_and_checks_have_their_spans_and_events(traced: tuple[Receiver, dict[str, Any]]) -> None:
    receiver, _ = traced
    jobs = by_job(receiver.spans)
    (tool,) = [s for s in jobs["tooled"] if s["name"] == "execute_tool lookup_order"]
    assert (
        tool["attributes"]["gen_ai.tool.name"] == "lookup_order" and tool["attributes"]["gen_ai.tool.call.id"]
    )
    (root,) = [s for s in jobs["checked"] if s["name"].startswith("invoke_agent")]
    grades = {a["gen_ai.evaluation.name"]: a for n, a in root["events"] if n == "gen_ai.evaluation.result"}
    assert set(grades) == {"says-city", "right"}
    assert all(g["gen_ai.evaluation.score.label"] in ("pass", "fail") for g in grades.values())
    judged = [
        s["attributes"] for s in jobs["checked"] if s["attributes"].get("anvil.call.purpose") == "judge"
    ]
    assert judged  # the judge's call is a span of the job's trace


def test_content_is_recorded_only_on_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    opted = {**on, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    for name in opted:  # a worker takes the driver's variables into its environment: undone after
        monkeypatch.setenv(name, "")
    for env, content in ((on, False), (opted, True)):
        telemetry.start(tuple(env.items()), "run")
        try:
            assert telemetry._state.tracer is not None and telemetry._state.content is content
        finally:
            telemetry.shutdown()
    telemetry.start((), "run")
    assert telemetry._state.tracer is None  # no OTEL variables: off


def test_what_turns_traces_on() -> None:
    assert not trace_setup.wanted({})
    assert trace_setup.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"})
    assert not trace_setup.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"})
    assert not trace_setup.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"})


def test_without_the_extra_one_warning_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(trace_setup, "missing_extra", lambda: True)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    with SimServer(SimConfig(seed=4)).start_thread() as sim:
        cfg = write_config(tmp_path / "anvil.yaml", sim.base_url)
        report = run_inprocess(
            cfg, write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b"]), tmp_path / "out.jsonl"
        )
    assert report.exit_code == ExitCode.OK
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("anvil: warning")]
    assert len(warnings) == 1 and "pip install 'anvil-cli[otel]'" in warnings[0]
    assert trace_setup.warning_if_unavailable({}) is None


@pytest.mark.slow
def test_anvils_own_metrics_arrive_with_the_journals_final_figures(
    traced: tuple[Receiver, dict[str, Any]],
) -> None:
    """The driver's metrics from the snapshot that feeds /metrics (snapshot/otlp_metrics.py),
    sent as the run ended: the same names, the journal's final figures."""
    receiver, journal = traced
    states = {
        state: sum(1 for j in journal.values() if j["state"] == state) for state in otlp_metrics.JOB_STATES
    }
    assert receiver.last("anvil_jobs") == {(("state", s),): float(n) for s, n in states.items()}
    assert receiver.last("anvil_run_jobs") == {(): float(len(JOBS))}
    cost = sum(j["cost_usd"] for j in journal.values())
    for name in ("anvil_run_cost_usd", "anvil_cost_usd"):
        assert receiver.last(name)[()] == pytest.approx(cost)
    tokens = {
        kind: sum((j["usage"] or {}).get(key, 0) for j in journal.values())
        for kind, key in (("input", "input_tokens"), ("output", "output_tokens"))
    }
    got = receiver.last("anvil_tokens")
    assert {kind: got[(("kind", kind),)] for kind in tokens} == tokens
    calls = [a for j in journal.values() for a in j["log"]]
    assert receiver.last("anvil_api_calls") == {(): float(len(calls))}
    limited = sum(1 for a in calls if a["status_code"] == 429)
    assert limited == 1 and receiver.last("anvil_rate_limited") == {(): 1.0}
    assert receiver.last("anvil_agents_in_flight") == {(): 0.0}
    checked = [j["checks"]["passed"] for j in journal.values() if j["checks"]]
    assert receiver.last("anvil_checks_pass_rate") == {(): sum(checked) / len(checked)}
    headroom = receiver.last("anvil_limiter_headroom_percent")
    assert headroom and all(0.0 <= v <= 100.0 for v in headroom.values())
    assert {dict(k)["dimension"] for k in headroom} >= {"requests"}
    units = {name: unit for name, _, _, unit in receiver.values}
    assert units["anvil_run_cost_usd"] == "USD" and units["anvil_tokens"] == "{token}"


def test_anvils_own_metrics_are_off_unless_asked() -> None:
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")
    assert otlp_metrics.exporter({}) is None
    on = {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:9/v1/metrics"}
    assert otlp_metrics.exporter({**on, "OTEL_METRICS_EXPORTER": "none"}) is None
    assert otlp_metrics.exporter({**on, "OTEL_SDK_DISABLED": "true"}) is None
    made = otlp_metrics.exporter(on)
    assert made is not None
    made.ended()
