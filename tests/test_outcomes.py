"""The typed outcomes at the journal's boundary: what a real run journaled (tool calls, a failed
tool, a retried call, a failed job, prompt caching) reads back through `from_json` and writes
out through `to_json` byte for byte, and the values pickle (they cross pipes and Ray)."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace

from anthropic.types import CacheCreation
from anthropic.types import Usage as SdkUsage

from anvil_cli.engine.attempts import log_from_json, tool_errors_of
from anvil_cli.engine.events import CallFailed, JobDone
from anvil_cli.engine.outcomes import JobError, JobResult, Usage
from anvil_cli.engine.worker.sdk_message import usage_of
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import journal_query, run_inprocess, write_config, write_jobs

SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
ECHO = [sys.executable, "-c", "import json,sys; print('order', json.load(sys.stdin)['order_id'])"]
FAIL = [sys.executable, "-c", "import sys; sys.exit(3)"]


def _tool(command: list[str]) -> dict[str, object]:
    return {"name": "lookup_order", "input_schema": SCHEMA, "anvil_command": command}


def test_what_a_run_journaled_reads_back_and_writes_out_the_same(tmp_path: Path) -> None:
    jobs = [
        {"id": "tool", "prompt": "Where is my order?", "tools": [_tool(ECHO)]},
        {"id": "bad-tool", "prompt": "Where is my order?", "tools": [_tool(FAIL)]},
        {"id": "retried", "prompt": "@sim{fail=529x1} again"},
        {"id": "failed", "prompt": "@sim{status=400} nope"},
        {"id": "cached", "prompt": "x " * 3000, "system": "s " * 3000},
    ]
    with SimServer(SimConfig(seed=2)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", jobs)
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        assert run_inprocess(config, batch, tmp_path / "out.jsonl").exit_code == ExitCode.JOBS_FAILED
    rows = journal_query(
        tmp_path / ".anvil", "SELECT usage_json, error_json, attempts_json FROM jobs ORDER BY seq"
    )
    assert len(rows) == len(jobs)
    logs = []
    for usage_json, error_json, attempts_json in rows:
        if usage_json is not None:
            assert json.dumps(Usage.from_json(json.loads(str(usage_json))).to_json()) == usage_json
        if error_json is not None:
            assert json.dumps(JobError.from_json(json.loads(str(error_json))).to_json()) == error_json
        log = log_from_json(json.loads(str(attempts_json)))
        assert json.dumps([a.to_json() for a in log]) == attempts_json
        logs.append(log)
    tool, bad_tool, retried, failed, _cached = logs
    assert tool[0].tools is not None and not tool[0].failed_tools()
    assert [c.error for c in bad_tool[0].failed_tools()] == ["exit"]
    assert tool_errors_of(json.loads(str(rows[1][2])))[0] == 1
    assert not retried[0].ok and retried[0].wait_s is not None and retried[-1].ok
    assert failed[-1].status_code == 400 and failed[-1].error_type == "invalid_request_error"
    usage = Usage.from_json(json.loads(str(rows[4][0])))
    assert (
        usage.cache_write_tokens > 0 and usage.counted_input == usage.input_tokens + usage.cache_write_tokens
    )
    error = JobError.from_json(json.loads(str(rows[3][1])))
    result = JobResult(3, False, "m", 1, usage=usage, error=error, attempt_log=failed)
    for event in (JobDone(0, result), CallFailed(0, 3, failed[-1])):
        assert pickle.loads(pickle.dumps(event)) == event


def test_the_calls_of_a_job_add_up_and_keep_the_apis_other_fields() -> None:
    first = SdkUsage(input_tokens=10, output_tokens=5, cache_creation=CacheCreation(
        ephemeral_5m_input_tokens=3, ephemeral_1h_input_tokens=0))  # fmt: skip
    later = SdkUsage(input_tokens=7, output_tokens=1, cache_creation_input_tokens=3, service_tier="standard")
    total = usage_of(SimpleNamespace(usage=first)) + usage_of(SimpleNamespace(usage=later))
    assert list(total.to_json().items()) == [
        (
            "cache_creation",
            {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 3},
        ),  # as it came first
        ("input_tokens", 17),
        ("output_tokens", 6),
        ("cache_creation_input_tokens", 3),  # keys new in a later call come after, as they came
        ("service_tier", "standard"),
    ]
    assert (total.input_tokens, total.output_tokens, total.cache_write_tokens, total.cache_read_tokens) == (
        17,
        6,
        3,
        0,
    )
