"""Tool failures are first-class: a tool that cannot start, exits non-zero, is killed, times out
or has its output cut is counted in the job's result, the run's `--json` summary, `anvil status`
(text and JSON), the dashboard and the report, each figure equal to the journal's count. And
relative paths in `anvil_command` mean what they mean where `anvil run` was started."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from rich.console import Console

from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.worker.tools.toolbox import resolve_command
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.snapshot.status import RunStatus, status_json
from anvil_cli.views.api import prom
from anvil_cli.views.api.typed_schema import SchemaSet
from anvil_cli.views.dashboard.render import render
from anvil_cli.views.progress import human_summary, snapshot_line
from anvil_cli.views.report import report_data
from tests.engine_support import invoke_cli, read_results, run_cli, write_config, write_jobs

SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
PY = sys.executable
# job id -> (its tool's command, the kind of tool error expected, or None)
TOOLS: dict[str, tuple[list[str], str | None]] = {
    "missing": (["anvil-no-such-tool-7f3a"], "not_started"),
    "exit": ([PY, "-c", "import sys; print('no such order', file=sys.stderr); sys.exit(3)"], "exit"),
    "killed": ([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], "killed"),
    "timeout": ([PY, "-c", "import time; time.sleep(300)"], "timeout"),  # sleep-ok: killed at 2 s
    "cut": ([PY, "-c", "print('x' * 5000)"], "output_cut"),  # over tool_max_output_kb: 1
    "fine": ([PY, "-c", "import json, sys; print('order', json.load(sys.stdin)['order_id'])"], None),
}
FAILING = sum(1 for _, kind in TOOLS.values() if kind)


def _tool(command: list[str] | str) -> dict[str, Any]:
    return {"name": "lookup_order", "description": "d", "input_schema": SCHEMA, "anvil_command": command}


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of six tool jobs, five of whose tools fail, through the CLI; what it left."""
    tmp = tmp_path_factory.mktemp("tool-errors")
    jobs = [{"id": job_id, "prompt": "Where?", "tools": [_tool(argv)]} for job_id, (argv, _) in TOOLS.items()]
    batch = write_jobs(tmp / "b.jsonl", jobs)
    with SimServer(SimConfig(seed=5)).start_thread() as sim:
        config = write_config(
            tmp / "anvil.yaml", sim.base_url, run={"tool_timeout_s": 2, "tool_max_output_kb": 1}
        )
        out = tmp / "out.jsonl"
        done = run_cli("run", str(batch), "--config", str(config), "--json", "-o", str(out), cwd=tmp)
    assert done.returncode == ExitCode.OK, done.stderr
    status = invoke_cli("status", "--json", "--config", str(config), cwd=tmp)
    assert status.returncode == ExitCode.OK, status.stderr
    text = invoke_cli("status", "--config", str(config), cwd=tmp)
    return {
        "summary": json.loads(done.stdout),
        "results": {r["id"]: r for r in read_results(out)},
        "status": json.loads(status.stdout),
        "status_text": text.stdout,
        "state_dir": tmp / ".anvil",
    }


def test_each_failed_tool_call_is_in_its_job_s_result(failed_run: dict[str, Any]) -> None:
    results = failed_run["results"]
    assert set(results) == set(TOOLS)
    for job_id, (_, kind) in TOOLS.items():
        r = results[job_id]
        # the model was told and answered: the job itself succeeds, its tool error is reported
        assert r["status"] == "succeeded" and r["stop_reason"] == "end_turn" and r["attempts"] == 2, r
        if kind is None:
            assert r["tool_errors"] == 0 and r["tool_error"] is None
            continue
        assert r["tool_errors"] == 1
        assert r["tool_error"]["tool"] == "lookup_order" and r["tool_error"]["kind"] == kind
    assert "anvil-no-such-tool-7f3a" in results["missing"]["tool_error"]["message"]
    assert results["exit"]["tool_error"]["message"] == "exit code 3: no such order"
    assert results["killed"]["tool_error"]["message"].startswith("exit code -9 (SIGKILL)")
    assert results["timeout"]["tool_error"]["message"] == "the tool timed out after 2 s"
    cut = "output cut: the tool wrote 5001 bytes, the first 1024 are shown"
    assert results["cut"]["tool_error"]["message"] == cut


def test_the_attempt_log_lists_each_tool_call_under_the_answer_that_asked(failed_run: dict[str, Any]) -> None:
    with Journal.open(failed_run["state_dir"]) as journal:
        run_id = failed_run["summary"]["run_id"]
        logs = {row["id"]: row["attempt_log"] for row in journal.iter_results(run_id)}
    for job_id, (_, kind) in TOOLS.items():
        asked, answered = logs[job_id]
        assert "tools" not in answered
        (call,) = asked["tools"]
        assert call["tool"] == "lookup_order"
        assert call.get("error") == kind
    (fine,) = logs["fine"][0]["tools"]
    assert fine["output"].startswith("order ")  # the head of what the tool printed


def test_the_summary_and_status_count_what_the_journal_holds(failed_run: dict[str, Any]) -> None:
    run_id = failed_run["summary"]["run_id"]
    with Journal.open(failed_run["state_dir"]) as journal:
        from_rows = sum(row["tool_errors"] for row in journal.iter_results(run_id))
        from_sql = journal.tool_errors(run_id)
    assert from_rows == from_sql == FAILING
    summary, status = failed_run["summary"], failed_run["status"]
    assert summary["tool_errors"] == FAILING
    assert summary["tool_errors_by_kind"] == {kind: 1 for _, kind in TOOLS.values() if kind}
    assert status["tool_errors"] == FAILING
    assert status["errors"]["tool_errors"] == FAILING  # the session's, which was the whole run
    last = status["errors"]["last_tool_error"]
    assert last["tool"] == "lookup_order" and last["kind"] in summary["tool_errors_by_kind"]
    assert f"{FAILING} failed tool call(s)" in failed_run["status_text"]


def test_the_status_with_tool_errors_fits_the_documented_schema(failed_run: dict[str, Any]) -> None:
    """GET /status's value (`status_json`) against the schema of its TypedDicts."""
    typed = SchemaSet()
    schema = {**typed.ref(RunStatus), "components": {"schemas": typed.schemas}}
    validator = jsonschema_rs.Draft202012Validator(schema)
    with Journal.open(failed_run["state_dir"]) as journal:
        status = status_json(journal, failed_run["summary"]["run_id"])
    assert status["errors"]["last_tool_error"] is not None and status["tool_errors"] == FAILING
    assert [e.message for e in validator.iter_errors(status)] == []


def test_the_dashboard_and_the_report_show_them(failed_run: dict[str, Any]) -> None:
    status: RunStatus = failed_run["status"]
    console = Console(width=120, record=True, color_system=None)
    console.print(render(status, 120))
    shown = console.export_text()
    assert f"{FAILING} failed tool calls" in shown and "last: lookup_order " in shown
    assert snapshot_line(status).endswith(f" | tool errors {FAILING}")  # the progress line off a terminal
    closing = Console(width=200, record=True, color_system=None)
    human_summary(closing, failed_run["summary"])  # `anvil run`'s closing lines, without --json
    assert f"failed tool calls {FAILING} (this session: exit x1, killed x1," in closing.export_text()
    exported = prom.render(status).decode()
    for kind in ("not_started", "exit", "killed", "timeout", "output_cut"):
        assert f'anvil_tool_errors_total{{kind="{kind}"}} 1.0' in exported  # GET /metrics
    with Journal.open(failed_run["state_dir"]) as journal:
        data = report_data(journal, failed_run["summary"]["run_id"], now=0.0)
    assert data["tool_error_job_count"] == FAILING
    rows = {row["id"]: row for row in data["tool_error_jobs"]}
    assert set(rows) == {job_id for job_id, (_, kind) in TOOLS.items() if kind}
    assert all(rows[job_id]["kind"] == TOOLS[job_id][1] and rows[job_id]["count"] == 1 for job_id in rows)
    assert data["status"]["tool_errors"] == FAILING


# -- relative paths -----------------------------------------------------------------------------


def test_relative_paths_that_exist_where_anvil_started_are_made_absolute(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "look.py").write_text("print('hi')\n")
    (tmp_path / "data.csv").write_text("a\n")
    base = str(tmp_path)
    cases = [
        (["python3", "tools/look.py"], ["python3", f"{base}/tools/look.py"]),
        (["tools/look.py", "data.csv"], [f"{base}/tools/look.py", f"{base}/data.csv"]),
        (["look.py"], ["look.py"]),  # a bare program name: looked up on PATH
        (
            ["python3", "out.txt", "--data=data.csv", "-f", "tools"],  # out.txt is not there: a new file
            ["python3", "out.txt", "--data=data.csv", "-f", f"{base}/tools"],
        ),
        (["/usr/bin/env", "/etc/hostname"], ["/usr/bin/env", "/etc/hostname"]),
        (["python3", "-c", "x" * 400], ["python3", "-c", "x" * 400]),  # longer than a file name
        (["./tools/look.py"], [f"{base}/./tools/look.py"]),
    ]
    for argv, expected in cases:
        assert resolve_command(argv, tmp_path) == expected


def _echo_tool_tree(root: Path) -> None:
    (root / "tools").mkdir(parents=True)
    (root / "tools" / "echo.py").write_text(
        "import json, os, sys\nprint('echo', json.load(sys.stdin)['order_id'], os.getcwd())\n"
    )


@pytest.mark.slow  # a whole run or several: the slow tier (CI runs it after the default suite)
def test_a_relative_command_runs_from_where_anvil_started_even_when_resumed_elsewhere(tmp_path: Path) -> None:
    """The first run starts in `first/` (where tools/echo.py is) and stops at once (the first
    job's call is refused: 401); the resume is started in `second/`, where there is no tools/."""
    first, second = tmp_path / "first", tmp_path / "second"
    _echo_tool_tree(first)
    second.mkdir()
    jobs: list[dict[str, Any]] = [{"id": "stopper", "prompt": "@sim{fail=401x1}", "priority": "critical"}]
    echo = _tool("python3 tools/echo.py")
    # distinct prompts: identical requests would be answered from the result cache
    jobs += [{"id": f"t{i}", "prompt": f"Where is order {i}?", "tools": [echo]} for i in range(3)]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    with SimServer(SimConfig(seed=6)).start_thread() as sim:
        scaling = {"workers": 1, "max_agents": 1, "max_concurrent_jobs": 1, "min_agents": 1}
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, scaling=scaling)
        stopped = run_cli("run", str(batch), "--config", str(config), "--json", cwd=first)
        assert stopped.returncode == ExitCode.STOPPED, stopped.stderr
        assert json.loads(stopped.stdout)["counts"]["pending"] >= 3
        out = tmp_path / "out.jsonl"
        done = run_cli("run", str(batch), "--config", str(config), "--json", "-o", str(out), cwd=second)
    assert done.returncode == ExitCode.OK, done.stderr
    assert json.loads(done.stdout)["tool_errors"] == 0
    results = {r["id"]: r for r in read_results(out)}
    run_id = json.loads(done.stdout)["run_id"]
    with Journal.open(tmp_path / ".anvil") as journal:
        rows = {row["id"]: row for row in journal.iter_results(run_id)}
    for i in range(3):
        job_id = f"t{i}"
        assert results[job_id]["status"] == "succeeded" and results[job_id]["tool_errors"] == 0
        command = rows[job_id]["job"]["params"]["tools"][0]["anvil_command"]
        assert command == ["python3", str(first / "tools" / "echo.py")]  # journaled absolute
        (call,) = rows[job_id]["attempt_log"][0]["tools"]
        said, _order, cwd = call["output"].split()
        # it ran in the job's own directory: under a private one of the run's, never the state dir
        assert said == "echo" and Path(cwd).name.endswith(f"-{job_id}")
        assert Path(cwd).parent.name.startswith(f"anvil-tools-{run_id}-")
    assert not list(second.iterdir())  # nothing was written where the resume started


def test_a_relative_command_missing_where_anvil_started_is_a_tool_error(tmp_path: Path) -> None:
    # no tools/echo.py where anvil starts: the command stays relative, and fails in the job's directory
    jobs = [{"id": "t", "prompt": "Where is my order?", "tools": [_tool("python3 tools/echo.py")]}]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    with SimServer(SimConfig(seed=7)).start_thread() as sim:
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        out = tmp_path / "out.jsonl"
        done = run_cli("run", str(batch), "--config", str(config), "--json", "-o", str(out), cwd=tmp_path)
    assert done.returncode == ExitCode.OK, done.stderr
    assert json.loads(done.stdout)["tool_errors"] == 1
    (r,) = read_results(out)
    assert r["tool_error"]["kind"] == "exit" and "tools/echo.py" in r["tool_error"]["message"]


def test_what_a_tool_prints_is_what_the_next_request_carries(tmp_path: Path) -> None:
    """The simulator obeys directives written in a tool_result: a tool that prints one makes the
    request after it fail once with a 529 (then answer), which only the model's side can see."""
    say = [PY, "-c", "print('@sim{fail=529x1}')"]
    batch = write_jobs(tmp_path / "b.jsonl", [{"id": "t", "prompt": "Where?", "tools": [_tool(say)]}])
    with SimServer(SimConfig(seed=8)).start_thread() as sim:
        config = write_config(tmp_path / "anvil.yaml", sim.base_url)
        out = tmp_path / "out.jsonl"
        done = run_cli("run", str(batch), "--config", str(config), "--json", "-o", str(out), cwd=tmp_path)
    assert done.returncode == ExitCode.OK, done.stderr
    (r,) = read_results(out)
    assert r["status"] == "succeeded" and r["attempts"] == 3 and r["tool_errors"] == 0
    with Journal.open(tmp_path / ".anvil") as journal:
        (row,) = list(journal.iter_results(json.loads(done.stdout)["run_id"]))
    assert [a["status_code"] for a in row["attempt_log"]] == [200, 529, 200]
    assert row["attempt_log"][0]["tools"] == [{"tool": "lookup_order", "output": "@sim{fail=529x1}\n"}]
