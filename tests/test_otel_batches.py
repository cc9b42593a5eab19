"""OpenTelemetry traces of `--mode batches` (docs/telemetry.md): a small batch run in process
through the simulator's Message Batches API with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at the
real OTLP/HTTP receiver of tests/otel_support.py. Each ingested batch is a span in the run's
trace; each job in it an `invoke_agent` trace linked to it, with a `chat` span per request
carrying Messages mode's GenAI attributes and the journal's cost at the batch price."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from anvil_cli.engine.modes import batch_spans
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import journal_query, run_inprocess, write_config, write_jobs
from tests.otel_support import Receiver, need_otel

HAIKU = "claude-haiku-4-5"
JOBS = [
    *({"id": f"plain-{i}", "prompt": f"Say hi {i}"} for i in range(5)),
    {"id": "flaky", "prompt": "@sim{fail=500x1} Say hi"},
    {"id": "refused", "prompt": "@sim{status=400} Say hi"},
    {
        "id": "judged",
        "prompt": "@sim{score=5} Which city?",
        "checks": [{"name": "right", "judge": {"rubric": "?"}}],
    },
]
FAST_BATCHES = {"max_requests": 4, "poll_interval_s": 0.05, "max_attempts": 2}


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Receiver, dict[str, Any], int]]:
    need_otel()
    receiver = Receiver()
    tmp = tmp_path_factory.mktemp("otel-batches")
    sim_config = SimConfig(seed=6, output_tokens=30, batch_seconds_per_request=0.001)
    with SimServer(sim_config).start_thread() as sim, pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        mp.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        mp.setattr(batch_spans, "FLUSH_EVERY", 2)  # a big batch's spans are sent as they are made
        batch = write_jobs(tmp / "b.jsonl", JOBS)
        config = write_config(
            tmp / "anvil.yaml", sim.base_url, batches=FAST_BATCHES, cache={"enabled": False}
        )
        report = run_inprocess(config, batch, tmp / "out.jsonl", mode="batches")
        assert report.exit_code == ExitCode.JOBS_FAILED, report.summary  # "refused" failed
        created = sim.stats()["batches_created"]
    rows = journal_query(tmp / ".anvil", "SELECT job_json, cost_usd, usage_json, state FROM jobs")
    journal = {
        json.loads(str(job))["id"]: {
            "cost_usd": cost,
            "usage": json.loads(str(usage)) if usage else None,
            "state": state,
        }
        for job, cost, usage, state in rows
    }
    receiver.close()
    yield receiver, journal, created


def test_each_batch_is_a_span_of_the_run_and_each_job_a_trace_linked_to_it(
    traced: tuple[Receiver, dict[str, Any], int],
) -> None:
    receiver, journal, created = traced
    (run,) = [s for s in receiver.spans if s["name"] == "anvil run b.jsonl"]
    batches = {s["span_id"]: s for s in receiver.spans if s["name"].startswith("anvil batch ")}
    assert len(batches) == created >= 3  # the first two, then the re-submitted and the judges'
    for b in batches.values():
        assert b["trace_id"] == run["trace_id"] and b["parent"] == run["span_id"] and b["kind"] == 3
        assert b["name"] == f"anvil batch {b['attributes']['anvil.batch.id']}" and b["end"] >= b["start"]
    roots = [s for s in receiver.spans if s["name"].startswith("invoke_agent ")]
    assert (
        {r["attributes"]["gen_ai.conversation.id"] for r in roots} == set(journal) == {j["id"] for j in JOBS}
    )
    for root in roots:
        ((trace_id, span_id),) = root["links"]
        assert root["parent"] == "" and trace_id == run["trace_id"] and span_id in batches
        batch = batches[span_id]
        assert root["attributes"]["anvil.batch.id"] == batch["attributes"]["anvil.batch.id"]
        children = [s for s in receiver.spans if s["trace_id"] == root["trace_id"] and s is not root]
        assert children and all(c["parent"] == root["span_id"] for c in children)
    cost = sum(b["attributes"]["gen_ai.usage.cost.amount"] for b in batches.values())
    assert cost == pytest.approx(sum(j["cost_usd"] for j in journal.values()))


def test_job_and_call_spans_carry_the_journals_tokens_and_batch_price(
    traced: tuple[Receiver, dict[str, Any], int],
) -> None:
    receiver, journal, _ = traced
    roots = [s for s in receiver.spans if s["name"].startswith("invoke_agent ")]
    for job_id, row in journal.items():
        mine = [r for r in roots if r["attributes"]["gen_ai.conversation.id"] == job_id]
        calls = [
            s
            for s in receiver.spans
            if s["name"].startswith("chat ") and any(s["trace_id"] == r["trace_id"] for r in mine)
        ]
        assert sum(r["attributes"]["gen_ai.usage.cost.amount"] for r in mine) == pytest.approx(
            row["cost_usd"]
        )
        assert sum(c["attributes"].get("gen_ai.usage.cost.amount", 0.0) for c in calls) == pytest.approx(
            row["cost_usd"]
        )
        for c in calls:
            a = c["attributes"]
            assert c["kind"] == 3 and c["name"] == f"chat {a['gen_ai.request.model']}"
            assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "anthropic"
            assert a["server.address"] == "127.0.0.1" and a["gen_ai.conversation.id"] == job_id
            if c["status"] != 2:
                assert a["gen_ai.response.id"] and a["gen_ai.response.finish_reasons"] == ["end_turn"]
                assert a["gen_ai.usage.cost.currency"] == "USD"
        answers = [
            c["attributes"] for c in calls if c["status"] != 2 and "anvil.call.purpose" not in c["attributes"]
        ]
        if row["usage"] is not None and job_id != "judged":  # a checked job's usage has its judges' too
            (answer,) = answers
            u = row["usage"]
            sent = (
                u["input_tokens"]
                + u.get("cache_read_input_tokens", 0)
                + u.get("cache_creation_input_tokens", 0)
            )
            assert answer["gen_ai.usage.input_tokens"] == sent
            assert answer["gen_ai.usage.output_tokens"] == u["output_tokens"]
            assert answer["gen_ai.request.max_tokens"] == 64
            assert any(r["attributes"].get("gen_ai.usage.output_tokens") == u["output_tokens"] for r in mine)


def test_errored_requests_failed_jobs_and_judges(traced: tuple[Receiver, dict[str, Any], int]) -> None:
    receiver, journal, _ = traced
    by_id: dict[str, list[dict[str, Any]]] = {}
    for s in receiver.spans:
        if s["name"].startswith(("chat ", "invoke_agent ")):
            by_id.setdefault(s["attributes"]["gen_ai.conversation.id"], []).append(s)
    flaky = sorted((s for s in by_id["flaky"] if s["name"].startswith("chat ")), key=lambda s: s["start"])
    assert [s["status"] for s in flaky] == [2, 0]  # errored, then answered in the next batch
    assert flaky[0]["attributes"]["error.type"] == "api_error"
    refused = sorted(
        (s for s in by_id["refused"] if s["name"].startswith("invoke_agent ")), key=lambda s: s["start"]
    )
    assert journal["refused"]["state"] == "failed" and len(refused) == FAST_BATCHES["max_attempts"]
    assert refused[-1]["status"] == 2 and refused[-1]["attributes"]["error.type"] == "invalid_request_error"
    judged = [
        s["attributes"]
        for s in sorted(by_id["judged"], key=lambda s: s["start"])
        if s["name"].startswith("chat ")
    ]
    assert [a.get("anvil.call.purpose") for a in judged] == [None, "judge"]
    (graded,) = [s for s in by_id["judged"] if any(n == "gen_ai.evaluation.result" for n, _ in s["events"])]
    (grade,) = [a for n, a in graded["events"] if n == "gen_ai.evaluation.result"]
    assert grade["gen_ai.evaluation.name"] == "right" and grade["gen_ai.evaluation.score.label"] in (
        "pass",
        "fail",
    )
