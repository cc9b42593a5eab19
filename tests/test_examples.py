"""Every batch in `examples/` runs as a user runs it: `anvil run examples/FILE --simulate` from
a copy of the repository root (its `anvil.yaml` included, so the routing and rate limits are the
documented ones), through the CLI in a subprocess. Each test checks what came out, not just the
exit code: every job succeeded, the results file holds the batch's ids, and what the example
is about happened (templates rendered, routing applied, the tool ran and its output reached the
model). `examples/grafana/anvil.json` is covered by tests/test_grafana_dashboard.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.engine.journal.store import Journal
from anvil_cli.exitcodes import ExitCode
from anvil_cli.policy.checks.schema import check_answer
from tests.engine_support import anvil_cmd, cli_env, read_results

REPO = Path(__file__).resolve().parent.parent
BATCHES = (
    "small.yaml",
    "demo.jsonl",
    "jobs.jsonl",
    "message_batches.jsonl",
    "templated.yaml",
    "templated_jsonl.yaml",
    "agent_tools.yaml",
    "checked.yaml",
)
# what examples/tools/lookup_order.py prints
LOOKUP = re.compile(r"order (\S+): (shipped on 2026-11-20|waiting for stock|delivered|not found)\n")


@dataclass
class Ran:
    """What one example's run left: its `--json` summary, results by id, journal rows by id."""

    summary: dict[str, Any]
    results: dict[str, dict[str, Any]]
    rows: dict[str, dict[str, Any]]
    ids: list[str]  # in the results file's order


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository root's user-facing files: nothing is written to the real one."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO / "examples", root / "examples")
    shutil.copy(REPO / "anvil.yaml", root / "anvil.yaml")
    return root


def run_example(root: Path, name: str, *flags: str, env: dict[str, str] | None = None) -> Ran:
    out = root / f"results-{name}.jsonl"
    done = subprocess.run(
        anvil_cmd("run", f"examples/{name}", "--simulate", "--json", "-o", str(out), *flags),
        cwd=root,
        env={**cli_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    results = read_results(out)
    with Journal.open(root / ".anvil") as journal:
        rows = {row["id"]: row for row in journal.iter_results(summary["run_id"])}
    assert summary["counts"] == {"total": len(results), "succeeded": len(results), "failed": 0, "pending": 0}
    assert all(r["status"] == "succeeded" and r["error"] is None for r in results), results
    assert summary["tool_errors"] == 0
    return Ran(summary, {r["id"]: r for r in results}, rows, [r["id"] for r in results])


def test_every_batch_in_examples_is_covered_here() -> None:
    batches = {p.name for p in (REPO / "examples").iterdir() if p.suffix in (".yaml", ".jsonl")}
    inputs = {"templated_inputs.jsonl"}  # rows of templated_jsonl.yaml, not a batch
    assert batches - inputs == set(BATCHES)


def test_small_yaml(root: Path) -> None:
    ran = run_example(root, "small.yaml")
    assert ran.ids == ["summary-2-4", "headline", "migration-guide", "follow-up", "job-00005"]
    models = {job_id: r["model"] for job_id, r in ran.results.items()}
    # model: auto with complexity: complex goes where anvil.yaml's routing says
    assert models == {
        "summary-2-4": "claude-haiku-4-5",
        "headline": "claude-haiku-4-5",
        "migration-guide": "claude-opus-4-8",
        "follow-up": "claude-sonnet-4-6",
        "job-00005": "claude-haiku-4-5",
    }
    assert ran.results["migration-guide"]["metadata"] == {"team": "docs", "reviewer": "sam"}  # merged
    assert all(r["metadata"]["team"] == "docs" for r in ran.results.values())
    assert len(ran.rows["follow-up"]["job"]["messages"]) == 3  # a whole conversation
    assert ran.rows["job-00005"]["job"]["params"]["stop_sequences"] == ["4."]
    assert ran.rows["headline"]["job"]["max_tokens"] == 64


@pytest.mark.slow
def test_demo_jsonl(root: Path) -> None:
    lines = [json.loads(line) for line in (root / "examples" / "demo.jsonl").read_text().splitlines()]
    ran = run_example(root, "demo.jsonl")
    assert len(lines) == 200 and ran.ids == [job["id"] for job in lines]
    for job in lines:
        r = ran.results[job["id"]]
        assert r["metadata"] == job["metadata"] and r["model"] == job["model"]
        assert r["output"] and r["usage"]["output_tokens"] > 0 and r["cost_usd"] > 0


def test_jobs_jsonl(root: Path) -> None:
    ran = run_example(root, "jobs.jsonl")
    assert ran.ids == ["q1", "q2", "q3"]
    assert ran.results["q2"]["model"] == "claude-haiku-4-5"  # auto, simple: routing.simple
    assert ran.results["q3"]["metadata"] == {"topic": "retries"}
    assert ran.rows["q1"]["job"]["priority"] == 1  # high


def test_message_batches_jsonl(root: Path) -> None:
    # the poll interval from the environment, as a user may set it: the default waits 30 s
    ran = run_example(
        root, "message_batches.jsonl", "--mode", "batches", env={"ANVIL_BATCHES__POLL_INTERVAL_S": "0.5"}
    )
    assert ran.ids == ["capital-fr", "haiku-spring", "weather-tool"]
    assert ran.results["weather-tool"]["stop_reason"] == "tool_use"  # a tool without a command
    assert ran.results["haiku-spring"]["model"] == "claude-sonnet-4-6"
    assert all(row["attempt_log"][0].get("batch") for row in ran.rows.values())  # answered in a batch


def test_templated_yaml(root: Path) -> None:
    ran = run_example(root, "templated.yaml")
    assert ran.ids == ["review-1", "review-2", "review-3"]
    job = ran.rows["review-1"]["job"]
    assert job["system"] == "You review Python code and answer in plain text."
    prompt = job["messages"][0]["content"]
    assert prompt.startswith("Review this Python snippet from app.py and list up to three problems:")
    assert "def add(a, b): return a - b" in prompt
    assert 'Answer as a JSON object like {"problems": [...]}.' in prompt  # {{ }} are literal braces
    assert "if (x = 1) { run() }" in ran.rows["review-2"]["job"]["messages"][0]["content"]


def test_templated_jsonl_yaml(root: Path) -> None:
    ran = run_example(root, "templated_jsonl.yaml")
    assert ran.ids == ["greet-fr", "greet-de", "bye-es"]
    prompts = {job_id: row["job"]["messages"][0]["content"] for job_id, row in ran.rows.items()}
    assert prompts == {
        "greet-fr": "Translate into French: Good morning, and welcome.",
        "greet-de": "Translate into German: Good morning, and welcome.",
        "bye-es": "Translate into Spanish: See you tomorrow.",
    }
    assert {r["model"] for r in ran.results.values()} == {"claude-haiku-4-5"}  # auto, simple


def test_agent_tools_yaml_runs_its_tool_and_the_model_gets_its_output(root: Path) -> None:
    ran = run_example(root, "agent_tools.yaml")
    assert ran.ids == ["ticket-1", "ticket-2", "ticket-3"]
    script = str(root / "examples" / "tools" / "lookup_order.py")
    for job_id, r in ran.results.items():
        # the tool was called, its result sent back, and the model answered after it
        assert r["attempts"] == 2 and r["stop_reason"] == "end_turn" and r["tool_errors"] == 0, r
        row = ran.rows[job_id]
        assert row["job"]["params"]["tools"][0]["anvil_command"] == ["python3", script]  # made absolute
        asked, answered = row["attempt_log"]
        (call,) = asked["tools"]
        assert call["tool"] == "lookup_order" and "error" not in call
        assert LOOKUP.fullmatch(call["output"]), call  # what lookup_order.py printed, as sent
        assert "tools" not in answered
    assert not (root / "examples" / "tools" / ".anvil").exists()


def test_checked_yaml_checks_every_answer_and_compares_its_variants(root: Path) -> None:
    ran = run_example(root, "checked.yaml", "--fail-under", "0.5")
    tickets = ("double-charge", "login-loop", "dark-mode")
    assert ran.ids == [f"{t}@{v}" for t in tickets for v in ("haiku", "sonnet")]  # job-major
    schema = json.loads((root / "examples" / "schemas" / "ticket.json").read_text())
    for job_id, r in ran.results.items():
        assert r["variant"] == job_id.split("@")[1]
        assert r["model"] == {"haiku": "claude-haiku-4-5", "sonnet": "claude-sonnet-4-6"}[r["variant"]]
        assert check_answer(schema, r["output"]).value == r["output_json"] is not None
        judge = r["checks"]["results"][-1]
        assert judge["kind"] == "judge" and judge["model"] == "claude-haiku-4-5"
        # @sim{score=N} in each ticket: 5 and 4 pass (pass_at 4 of 1-5), 2 fails
        assert judge["value"] == {"double-charge": 5, "login-loop": 4, "dark-mode": 2}[job_id.split("@")[0]]
        assert r["checks"]["passed"] is (not job_id.startswith("dark-mode"))
        # @sim{invalid=1}: login-loop's first answer was re-asked once, in both variants
        assert r["checks"]["reasks"] == (1 if job_id.startswith("login-loop") else 0)
        assert r["metadata"]["team"] == ("product" if job_id.startswith("dark-mode") else "support")
    assert ran.summary["checks"]["passed"] == 4 and ran.summary["checks"]["checked"] == 6
    assert ran.summary["fail_under"]["below"] is False
    # anvil compare on the latest run: its two variants, each at 2 of 3 passing
    done = subprocess.run(
        anvil_cmd("compare", "--json", "--pass-rate", "0.6"),
        cwd=root,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    compared = json.loads(done.stdout)
    sides = {side["name"]: side for side in compared["sides"]}
    assert set(sides) == {"haiku", "sonnet"}
    for name, side in sides.items():
        mine = [row for row in ran.rows.values() if row["job"]["variant"] == name]
        assert side["pass_rate"] == pytest.approx(2 / 3, abs=1e-6)
        assert side["cost_usd"] == pytest.approx(sum(row["cost_usd"] for row in mine), abs=1e-6)
    cheapest = min(sides.values(), key=lambda side: side["cost_per_job_usd"])["name"]
    assert compared["cheapest"] == cheapest
