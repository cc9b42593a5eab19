"""`output_schema:` and `checks:` in batch files (jobs/schemaspec.py, jobs/checkspec.py), read
through the loader `anvil run` uses: normalised into `Job.output_schema` / `Job.checks`, and
every mistake reported with its file, line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.errors import BatchError, Problem
from anvil_cli.jobs import schemaspec
from anvil_cli.jobs.fields import ModelSet
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.jobspec import JobFactory
from anvil_cli.jobs.loader import iter_batch, load_batch
from anvil_cli.policy.checks.spec import specs_of

SCHEMA = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}


def write(tmp_path: Path, text: str, name: str = "batch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def jobs_of(path: Path) -> list[Job]:
    return list(load_batch(path))


def problems_of(path: Path) -> list[Problem]:
    return [p for p in iter_batch(path) if isinstance(p, Problem)]


def texts(path: Path) -> list[str]:
    return [str(p) for p in problems_of(path)]


def test_every_user_form_normalised(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
jobs:
  - id: a
    prompt: q
    checks:
      - equals: Paris
      - contains: Paris
      - contains: [a, b]
        ignore_case: true
        name: both
      - regex: "^\\\\d+$"
      - json_path: "$.sentiment"
        equals: positive
      - json_path: "$.labels[0]"
        in: [x, y]
      - json_path: "$['score']"
        range: [null, 5]
      - length: {min: 10, max: 2000, unit: words}
      - judge: "Is it polite?"
      - judge: {rubric: "Is it right?", model: claude-haiku-4-5, scale: [0, 10], pass_at: 7}
      - contains: c
""",
    )
    (job,) = jobs_of(path)
    assert list(job.checks) == [
        {"name": "equals", "kind": "equals", "value": "Paris", "ignore_case": False},
        {"name": "contains", "kind": "contains", "values": ["Paris"], "ignore_case": False},
        {"name": "both", "kind": "contains", "values": ["a", "b"], "ignore_case": True},
        {"name": "regex", "kind": "regex", "pattern": "^\\d+$", "ignore_case": False},
        {
            "name": "json_path",
            "kind": "json_path",
            "path": "$.sentiment",
            "op": "equals",
            "value": "positive",
        },
        {"name": "json_path#2", "kind": "json_path", "path": "$.labels[0]", "op": "in", "values": ["x", "y"]},
        {
            "name": "json_path#3",
            "kind": "json_path",
            "path": "$['score']",
            "op": "range",
            "min": None,
            "max": 5,
        },
        {"name": "length", "kind": "length", "min": 10, "max": 2000, "unit": "words"},
        {
            "name": "judge",
            "kind": "judge",
            "rubric": "Is it polite?",
            "model": None,
            "scale": [1, 5],
            "pass_at": 4.0,
        },
        {
            "name": "judge#2",
            "kind": "judge",
            "rubric": "Is it right?",
            "model": "claude-haiku-4-5",
            "scale": [0, 10],
            "pass_at": 7,
        },
        {"name": "contains#2", "kind": "contains", "values": ["c"], "ignore_case": False},
    ]
    assert [s.name for s in specs_of(job.checks)][:3] == ["equals", "contains", "both"]


def test_generated_names_skip_given_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path, "jobs:\n  - prompt: q\n    checks: [{contains: a, name: contains}, {contains: b}]\n"
    )
    (job,) = jobs_of(path)
    assert [c["name"] for c in job.checks] == ["contains", "contains#2"]


def test_defaults_and_a_jobs_own_list_replaces_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
defaults:
  output_schema: {type: object}
  checks: [{contains: a}, {contains: b}]
jobs:
  - id: inherits
    prompt: q
  - id: own
    prompt: q
    checks: [{equals: z}]
  - id: none
    prompt: q
    checks: []
    output_schema: {type: array}
""",
    )
    inherits, own, none = jobs_of(path)
    assert inherits.output_schema == {"type": "object"}
    assert [c["values"] for c in inherits.checks] == [["a"], ["b"]]
    assert [c["kind"] for c in own.checks] == ["equals"]
    assert none.checks == () and none.output_schema == {"type": "array"}


def test_a_batch_without_them_is_unchanged(tmp_path: Path) -> None:
    (job,) = jobs_of(write(tmp_path, "jobs:\n  - prompt: q\n"))
    assert job.output_schema is None and job.checks == () and job.variant is None
    assert "checks" not in job.to_record() and "output_schema" not in job.to_record()


@pytest.mark.parametrize(
    ("check", "field", "message"),
    [
        ("{regex: 'a(b'}", "checks[0].regex", "bad regular expression at position 2"),
        ("{json_path: '$.a..b', equals: 1}", "checks[0].json_path", "bad JSON path at character 5"),
        ("{json_path: '$.a'}", "checks[0].json_path", "exactly one of equals, in, range (found none)"),
        ("{json_path: '$.a', equals: 1, in: [1]}", "checks[0].json_path", "found equals and in"),
        ("{json_path: '$.a', range: [5, 1]}", "checks[0].range", "min 5 is greater than max 1"),
        ("{json_path: '$.a', range: [a, 1]}", "checks[0].range", "numbers or null"),
        ("{json_path: '$.a', in: []}", "checks[0].in", "non-empty list"),
        ("{length: {min: 3, unit: bytes}}", "checks[0].length.unit", "must be one of chars, words"),
        ("{length: {}}", "checks[0].length", "give min, max or both"),
        ("{length: {min: -1}}", "checks[0].length.min", "at least 0"),
        (
            "{judge: {rubric: x, model: claude-haiku-4-6}}",
            "checks[0].judge.model",
            "did you mean 'claude-haiku-4-5'",
        ),
        ("{judge: {rubric: x, model: auto}}", "checks[0].judge.model", "not 'auto'"),
        ("{judge: {rubric: x, pass_at: 9}}", "checks[0].judge.pass_at", "from 1 to 5"),
        ("{judge: {rubric: x, scale: [5, 1]}}", "checks[0].judge.scale", "must be below"),
        ("{judge: {model: claude-haiku-4-5}}", "checks[0].judge.rubric", "non-empty text"),
        ("{judge: {rubric: x, grade: 1}}", "checks[0].judge.grade", "unknown key"),
        ("{equals: x, ignore_cas: true}", "checks[0].ignore_cas", "did you mean 'ignore_case'"),
        ("{equals: x, ignore_case: yes please}", "checks[0].ignore_case", "true or false"),
        ("{length: {max: 3}, ignore_case: true}", "checks[0].ignore_case", "unknown key"),
        ("{equals: x, contains: y}", "checks[0]", "exactly one of"),
        ("{name: x}", "checks[0]", "found none"),
        ("{contains: []}", "checks[0].contains", "non-empty list"),
        ("{equals: ''}", "checks[0].equals", "an empty string"),
        ("{equals: x, name: schema}", "checks[0].name", "output schema's check"),
        ("just text", "checks[0]", "expected a mapping"),
    ],
)
def test_bad_check_names_file_line_and_field(tmp_path: Path, check: str, field: str, message: str) -> None:
    path = write(tmp_path, f"jobs:\n  - id: a\n    prompt: q\n    checks:\n      - {check}\n")
    (problem,) = problems_of(path)[:1]
    assert problem.file == str(path)
    assert problem.line == 5
    assert problem.field == field
    assert message in problem.message


def test_duplicate_names_and_not_a_list(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs:\n  - prompt: q\n    checks: [{contains: a, name: n}, {equals: b, name: n}]\n"
        "  - prompt: q\n    checks: {contains: a}\n",
    )
    found = problems_of(path)
    assert [(p.line, p.field) for p in found] == [(3, "checks[1].name"), (5, "checks")]
    assert "duplicate check name 'n' (checks[0])" in found[0].message


def test_deep_problems_point_at_their_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
jobs:
  - id: a
    prompt: q
    output_schema:
      type: object
      properties:
        x:
          type: intx
""",
    )
    (problem,) = problems_of(path)
    assert (problem.line, problem.field) == (8, "output_schema.properties.x.type")
    assert str(problem).startswith(
        f"{path}:8: job 'a': field 'output_schema.properties.x.type': not a valid JSON Schema"
    )


def test_defaults_problems_name_the_section(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults:\n  checks:\n    - regex: '('\njobs:\n  - prompt: q\n")
    (problem,) = problems_of(path)
    assert (problem.line, problem.field) == (3, "defaults.checks[0].regex")


def test_schema_from_file_json_and_yaml_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "a.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "schemas" / "b.yaml").write_text("type: array\nitems: {type: string}\n")
    loads: list[Path] = []
    real = schemaspec._load

    def counting(path: Path) -> Any:
        loads.append(path)
        return real(path)

    monkeypatch.setattr(schemaspec, "_load", counting)
    path = write(
        tmp_path,
        """\
defaults:
  output_schema: {$file: schemas/a.json}
jobs:
  - prompt: q
  - prompt: q
    output_schema: {$file: ./schemas/a.json}
  - prompt: q
    output_schema: {$file: schemas/b.yaml}
  - prompt: q
    output_schema: {$file: schemas/../schemas/b.yaml}
""",
    )
    jobs = jobs_of(path)
    array = {"type": "array", "items": {"type": "string"}}
    assert [j.output_schema for j in jobs] == [SCHEMA, SCHEMA, array, array]
    assert len(loads) == 2  # once per file, however it is spelled


def test_schema_file_absolute_path(tmp_path: Path) -> None:
    schema = tmp_path / "elsewhere.json"
    schema.write_text(json.dumps(SCHEMA))
    sub = tmp_path / "sub"
    sub.mkdir()
    path = write(sub, f'jobs:\n  - prompt: q\n    output_schema: {{$file: "{schema}"}}\n')
    assert jobs_of(path)[0].output_schema == SCHEMA


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "missing.json", "file not found"),
        ("{not json", "bad.json", "invalid JSON at line 1"),
        ("a: [", "bad.yaml", "invalid YAML"),
        ('{"type": "intx"}', "wrong.json", "not a valid JSON Schema"),
        ("[1, 2]", "list.json", "must be a mapping"),
    ],
)
def test_schema_file_problems(tmp_path: Path, content: str | None, name: str, message: str) -> None:
    if content is not None:
        (tmp_path / name).write_text(content)
    path = write(tmp_path, f"jobs:\n  - id: a\n    prompt: q\n    output_schema:\n      $file: {name}\n")
    (problem,) = problems_of(path)
    assert (problem.line, problem.field) == (5, "output_schema.$file")
    assert problem.message.startswith(f"{name}: ")
    assert message in problem.message


def test_schema_file_with_other_keys_and_non_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs:\n  - prompt: q\n    output_schema: {$file: a.json, type: object}\n"
        "  - prompt: q\n    output_schema: {$file: 3}\n  - prompt: q\n    output_schema: [1]\n",
    )
    found = problems_of(path)
    assert [(p.line, p.field) for p in found] == [
        (3, "output_schema"),
        (5, "output_schema.$file"),
        (7, "output_schema"),
    ]
    assert "alone" in found[0].message and "expected a file path" in found[1].message
    assert "must be a mapping" in found[2].message


def test_post_jobs_refuses_schema_files() -> None:
    factory = JobFactory(ModelSet.build())
    made = factory.anvil_job(
        {"prompt": "q", "output_schema": {"$file": "/etc/passwd"}}, file="POST /jobs", line=1
    )
    assert isinstance(made, list)
    assert "not available here" in made[0].message
    ok = factory.anvil_job(
        {"prompt": "q", "output_schema": SCHEMA, "checks": [{"equals": "x"}]}, file="POST /jobs", line=2
    )
    assert isinstance(ok, Job) and ok.output_schema == SCHEMA and ok.checks[0]["kind"] == "equals"


def test_jsonl_jobs_carry_schema_and_checks(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    lines = [
        {
            "id": "a",
            "prompt": "q",
            "output_schema": SCHEMA,
            "checks": [{"json_path": "$.x", "range": [0, 9]}],
        },
        {"id": "b", "prompt": "q", "output_schema": {"$file": "s.json"}},
        {"id": "c", "prompt": "q", "checks": [{"regex": "("}]},
    ]
    path = write(tmp_path, "\n".join(json.dumps(x) for x in lines) + "\n", "batch.jsonl")
    items = list(iter_batch(path))
    a, b, c = items
    assert isinstance(a, Job) and a.output_schema == SCHEMA and a.checks[0]["op"] == "range"
    assert isinstance(b, Job) and b.output_schema == SCHEMA
    assert isinstance(c, Problem) and (c.line, c.field) == (3, "checks[0].regex")


def test_message_batches_output_config_passes_through(tmp_path: Path) -> None:
    config = {"format": {"type": "json_schema", "schema": SCHEMA}}
    request = {
        "custom_id": "r1",
        "params": {
            "model": "claude-haiku-4-5",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "q"}],
            "output_config": config,
        },
    }
    (job,) = jobs_of(write(tmp_path, json.dumps(request) + "\n", "batch.jsonl"))
    assert job.request()["output_config"] == config


def test_templated_batch_takes_them_from_the_template(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("id,city\nr1,Paris\nr2,Rome\n")
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    path = write(
        tmp_path,
        """\
defaults:
  checks: [{contains: default}]
template:
  prompt: "Where is {city}?"
  output_schema: {$file: s.json}
  checks:
    - contains: Italy
      ignore_case: true
inputs: rows.csv
id_field: id
""",
    )
    jobs = jobs_of(path)
    assert [j.id for j in jobs] == ["r1", "r2"]
    assert all(j.output_schema == SCHEMA for j in jobs)
    assert all(
        list(j.checks) == [{"name": "contains", "kind": "contains", "values": ["Italy"], "ignore_case": True}]
        for j in jobs
    )


def test_template_problems_name_the_batch_file(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("id,city\nr1,Paris\n")
    path = write(tmp_path, 'template:\n  prompt: "{city}"\n  checks:\n    - regex: "["\ninputs: rows.csv\n')
    with pytest.raises(BatchError) as caught:
        jobs_of(path)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (str(path), 4, "template.checks[0].regex")


def test_an_inline_schema_repeated_on_every_line_is_checked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[Any] = []
    real = schemaspec.schema_problem

    def counting(schema: Any) -> str | None:
        checked.append(schema)
        return real(schema)

    monkeypatch.setattr(schemaspec, "schema_problem", counting)
    bad = {"type": "intx"}
    lines = [{"prompt": "q", "output_schema": SCHEMA if i not in (3, 5) else bad} for i in range(6)]
    path = write(tmp_path, "\n".join(json.dumps(x) for x in lines) + "\n", "batch.jsonl")
    items = list(iter_batch(path))
    assert [type(i).__name__ for i in items] == ["Job", "Job", "Job", "Problem", "Job", "Problem"]
    assert checked == [SCHEMA, bad]  # each distinct schema once; the bad one reported at each line
    for item, line in ((items[3], 4), (items[5], 6)):
        assert isinstance(item, Problem) and (item.line, item.field) == (line, "output_schema.type")
        assert "not a valid JSON Schema" in item.message
