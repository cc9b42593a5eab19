"""`variants:` (jobs/variants.py) through the loader `anvil run` uses and through `anvil validate`:
every job once per variant, job-major, ids `<id>@<variant>`, the variant's keys over the job's
and the defaults'; every mistake located."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anvil_cli.cli import app
from anvil_cli.errors import Problem
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.loader import iter_batch, load_batch

runner = CliRunner()

BATCH = """\
defaults:
  model: claude-haiku-4-5
  max_tokens: 100
  metadata: {team: a}
  checks: [{contains: Paris}]
variants:
  - name: haiku
  - name: sonnet-brief
    model: claude-sonnet-4-5
    prompt: "Answer in one word. {prompt}"
    max_tokens: 20
    system: Be brief.
    metadata: {arm: brief}
    output_schema: {type: string}
    checks: [{equals: Paris}]
jobs:
  - id: capital
    prompt: What is the capital of France?
    metadata: {topic: geo}
  - prompt: Where is the Louvre?
    system: You are a guide.
"""


def write(tmp_path: Path, text: str, name: str = "batch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[Problem]:
    return [p for p in iter_batch(path) if isinstance(p, Problem)]


def test_each_job_runs_under_each_variant_job_major(tmp_path: Path) -> None:
    jobs: list[Job] = list(load_batch(write(tmp_path, BATCH)))
    assert [(j.id, j.seq, j.variant, j.base_id) for j in jobs] == [
        ("capital@haiku", 0, "haiku", "capital"),
        ("capital@sonnet-brief", 1, "sonnet-brief", "capital"),
        ("job-00002@haiku", 2, "haiku", "job-00002"),
        ("job-00002@sonnet-brief", 3, "sonnet-brief", "job-00002"),
    ]
    plain, brief, plain2, brief2 = jobs
    assert (plain.model, plain.max_tokens, plain.system) == ("claude-haiku-4-5", 100, None)
    assert plain.messages == [{"role": "user", "content": "What is the capital of France?"}]
    assert plain.metadata == {"team": "a", "topic": "geo"}
    assert [c["kind"] for c in plain.checks] == ["contains"] and plain.output_schema is None
    assert (brief.model, brief.max_tokens, brief.system) == ("claude-sonnet-4-5", 20, "Be brief.")
    assert brief.messages == [
        {"role": "user", "content": "Answer in one word. What is the capital of France?"}
    ]
    assert brief.metadata == {"team": "a", "topic": "geo", "arm": "brief"}
    assert brief.output_schema == {"type": "string"}
    assert list(brief.checks) == [
        {"name": "equals", "kind": "equals", "value": "Paris", "ignore_case": False}
    ]
    assert plain2.system == "You are a guide." and brief2.system == "Be brief."
    assert brief.to_record()["variant"] == "sonnet-brief"


def test_a_batch_without_variants_is_unchanged(tmp_path: Path) -> None:
    jobs = list(load_batch(write(tmp_path, "jobs:\n  - id: a\n    prompt: q\n  - id: b\n    prompt: r\n")))
    assert [(j.id, j.seq, j.variant) for j in jobs] == [("a", 0, None), ("b", 1, None)]
    assert all("variant" not in j.to_record() for j in jobs)


def test_templated_batch_with_variants(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"id": "r1", "city": "Paris"}\n{"id": "r2", "city": "Rome"}\n')
    path = write(
        tmp_path,
        'template:\n  prompt: "Where is {city}?"\ninputs: rows.jsonl\nid_field: id\n'
        "variants:\n  - name: a\n  - name: b\n    prompt: 'Briefly: {prompt}'\n",
    )
    jobs = list(load_batch(path))
    assert [j.id for j in jobs] == ["r1@a", "r1@b", "r2@a", "r2@b"]
    assert jobs[3].messages[0]["content"] == "Briefly: Where is Rome?"
    assert [j.seq for j in jobs] == [0, 1, 2, 3]


def test_variant_prompt_needs_a_job_given_by_prompt(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "variants:\n  - name: a\n  - name: b\n    prompt: 'x {prompt}'\njobs:\n"
        "  - id: convo\n    messages: [{role: user, content: hi}]\n",
    )
    (problem,) = problems_of(path)
    assert (problem.line, problem.job_id, problem.field) == (6, "convo@b", "messages")
    assert "variant 'b' rewrites the prompt" in problem.message


def test_variant_ids_still_collide(tmp_path: Path) -> None:
    path = write(
        tmp_path, "variants:\n  - name: v\njobs:\n  - id: x@v\n    prompt: q\n  - id: x\n    prompt: q\n"
    )
    (problem,) = problems_of(path)
    assert (problem.line, problem.job_id) == (6, "x@v")
    assert "duplicate id 'x@v' (first at line 4)" in problem.message


@pytest.mark.parametrize(
    ("variants", "line", "field", "message"),
    [
        ("  - name: a\n  - name: a\n", 3, "variants[1].name", "duplicate variant name 'a'"),
        ("  - name: 'has space'\n", 2, "variants[0].name", "matching ^[A-Za-z0-9_.-]{1,32}$"),
        ("  - model: claude-haiku-4-5\n", 2, "variants[0].name", "missing"),
        ("  - name: a\n    modle: x\n", 3, "variants[0].modle", "did you mean 'model'"),
        ("  - name: a\n    model: claude-haiku-9\n", 3, "variants[0].model", "unknown model"),
        ("  - name: a\n    prompt: 'no placeholder'\n", 3, "variants[0].prompt", "must include {prompt}"),
        (
            "  - name: a\n    prompt: '{prompt} {other}'\n",
            3,
            "variants[0].prompt",
            "the only placeholder is {prompt}",
        ),
        ("  - name: a\n    prompt: '{prompt'\n", 3, "variants[0].prompt", "bad placeholder syntax"),
        (
            "  - name: a\n    checks:\n      - regex: '('\n",
            4,
            "variants[0].checks[0].regex",
            "bad regular expression",
        ),
        (
            "  - name: a\n    output_schema: {type: nope}\n",
            3,
            "variants[0].output_schema.type",
            "not a valid JSON Schema",
        ),
        ("  - name: a\n    max_tokens: 0\n", 3, "variants[0].max_tokens", "must be from 1"),
        ("  - just text\n", 2, "variants[0]", "expected a mapping"),
    ],
)
def test_bad_variants_are_located(tmp_path: Path, variants: str, line: int, field: str, message: str) -> None:
    path = write(tmp_path, f"variants:\n{variants}jobs:\n  - prompt: q\n")
    found = problems_of(path)
    assert found, "expected a problem"
    problem = found[0]
    assert (problem.file, problem.line, problem.field) == (str(path), line, field)
    assert message in problem.message


def test_variants_must_be_a_list_and_come_before_jobs(tmp_path: Path) -> None:
    empty = problems_of(write(tmp_path, "variants: []\njobs:\n  - prompt: q\n"))
    assert [(p.line, p.field) for p in empty] == [(1, "variants")]
    late = problems_of(write(tmp_path, "jobs:\n  - prompt: q\nvariants:\n  - name: a\n"))
    assert [(p.line, p.field) for p in late] == [(3, "variants")]
    assert "'variants:' must come before 'jobs:'" in late[0].message


def test_validate_counts_jobs_times_variants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, BATCH)
    result = runner.invoke(app, ["validate", str(path)], env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert "4 jobs, valid (2 × 2 variants)" in result.stdout
    assert "variants: haiku 2, sonnet-brief 2" in result.stdout
    data = json.loads(runner.invoke(app, ["validate", "--json", str(path)]).stdout)
    assert (data["jobs"], data["base_jobs"], data["per_variant"]) == (4, 2, {"haiku": 2, "sonnet-brief": 2})
    assert data["per_model"] == {"claude-haiku-4-5": 2, "claude-sonnet-4-5": 2}


def test_validate_json_without_variants_has_no_variant_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "jobs:\n  - prompt: q\n")
    data = json.loads(runner.invoke(app, ["validate", "--json", str(path)]).stdout)
    assert "per_variant" not in data and "base_jobs" not in data


def test_validate_reports_a_bad_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "variants:\n  - name: a\n    prompt: nope\njobs:\n  - prompt: q\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert (
        f"{path}:3: field 'variants[0].prompt': a variant's prompt must include {{prompt}}" in result.stderr
    )


def test_a_long_id_with_its_variant_is_refused(tmp_path: Path) -> None:
    long_id = "x" * 250
    path = write(tmp_path, f"variants:\n  - name: variant\njobs:\n  - id: {long_id}\n    prompt: q\n")
    (problem,) = problems_of(path)
    assert (problem.line, problem.field) == (4, "id")
    assert "longer than 256 characters (258) with its variant's name added" in problem.message


def test_a_name_with_a_newline_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'variants:\n  - name: "a\\n"\njobs:\n  - prompt: q\n')
    (problem,) = problems_of(path)
    assert problem.field == "variants[0].name"
