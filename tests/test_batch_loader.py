"""The batch loader API: iter_batch, load_batch, summarize_batch over the three shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anvil_cli.errors import BatchError, Problem
from anvil_cli.jobs.job import Job, Priority
from anvil_cli.jobs.loader import detect_shape, iter_batch, load_batch, summarize_batch

EXAMPLES = Path(__file__).parents[1] / "examples"


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_jobs_get_defaults_generated_ids_and_order() -> None:
    jobs = list(load_batch(EXAMPLES / "small.yaml"))
    assert [j.id for j in jobs] == ["summary-2-4", "headline", "migration-guide", "follow-up", "job-00005"]
    assert [j.seq for j in jobs] == [0, 1, 2, 3, 4]
    first, headline, guide, follow_up, last = jobs
    assert first.model == "claude-haiku-4-5" and first.max_tokens == 512 and first.priority is Priority.HIGH
    assert first.messages == [{"role": "user", "content": first.messages[0]["content"]}]
    assert first.system == "You are a concise technical writer."
    assert headline.max_tokens == 64 and headline.priority is Priority.LOW
    assert guide.model == "auto" and guide.complexity == "complex"
    assert guide.metadata == {"team": "docs", "reviewer": "sam"}
    assert [m["role"] for m in follow_up.messages] == ["user", "assistant", "user"]
    assert last.params == {"stop_sequences": ["4."]} and last.line == 42


def test_built_in_defaults_when_absent_everywhere() -> None:
    (job,) = load_batch(write("b.yaml", "jobs:\n  - id: 12\n    prompt: hi\n"))
    assert job == Job(id="12", seq=0, messages=[{"role": "user", "content": "hi"}], model="auto",
                      max_tokens=1024, line=2)  # fmt: skip


def test_message_batches_shape() -> None:
    jobs = list(load_batch(EXAMPLES / "message_batches.jsonl"))
    assert [j.id for j in jobs] == ["capital-fr", "haiku-spring", "weather-tool"]
    assert jobs[1].system == "You write haiku." and jobs[1].model == "claude-sonnet-4-6"
    assert jobs[2].params["tools"][0]["name"] == "get_weather"
    assert jobs[2].request()["tools"] == jobs[2].params["tools"]
    assert [j.line for j in jobs] == [1, 2, 3]


def test_jsonl_mixes_shapes_and_skips_blank_lines() -> None:
    mb = {"custom_id": "b", "params": {"model": "claude-haiku-4-5", "max_tokens": 9,
                                       "messages": [{"role": "user", "content": "y"}]}}  # fmt: skip
    path = write("b.ndjson", json.dumps({"prompt": "x"}) + "\n\n   \n" + json.dumps(mb) + "\n")
    jobs = list(load_batch(path))
    assert [(j.id, j.line, j.seq) for j in jobs] == [("job-00001", 1, 0), ("b", 4, 1)]


def test_templated_csv_rows() -> None:
    jobs = list(load_batch(EXAMPLES / "templated.yaml"))
    assert [j.id for j in jobs] == ["review-1", "review-2", "review-3"]
    assert jobs[0].system == "You review Python code and answer in plain text."
    content = jobs[1].messages[0]["content"]
    assert "index.js" in content and "if (x = 1) { run() }" in content and '{"problems": [...]}' in content
    assert [j.line for j in jobs] == [2, 3, 4]  # lines of the inputs file


def test_templated_jsonl_rows_and_row_number_ids() -> None:
    write("t.yaml", "template:\n  prompt: 'Say {word} {n:03d}'\n  priority: low\ninputs: rows.jsonl\n")
    write("rows.jsonl", '{"word": "hi", "n": 7}\n{"word": "yo", "n": 8}\n')
    jobs = list(load_batch(Path("t.yaml")))
    assert [(j.id, j.messages[0]["content"], j.priority) for j in jobs] == [
        ("job-00001", "Say hi 007", Priority.LOW),
        ("job-00002", "Say yo 008", Priority.LOW),
    ]


def test_templated_defaults_merge_under_template() -> None:
    write("t.yaml", "defaults:\n  model: claude-haiku-4-5\n  metadata: {a: 1}\n"
                    "template:\n  prompt: '{x}'\n  metadata: {b: 2}\ninputs: r.csv\n")  # fmt: skip
    write("r.csv", "x\nhello\n")
    (job,) = load_batch(Path("t.yaml"))
    assert job.model == "claude-haiku-4-5" and job.metadata == {"a": 1, "b": 2}


def test_template_problems() -> None:
    write("t.yaml", "template:\n  prompt: 'Bad {0} and {x'\ninputs: r.txt\njobs: []\n")
    problems = [p for p in iter_batch(Path("t.yaml")) if isinstance(p, Problem)]
    assert problems and "not both" in problems[0].message


def test_iter_batch_yields_problems_in_place_and_keeps_going() -> None:
    path = write("b.jsonl", '{"id": "a", "prompt": "x"}\nnot json\n{"id": "c", "prompt": "z"}\n')
    items = list(iter_batch(path))
    assert isinstance(items[0], Job) and isinstance(items[1], Problem) and isinstance(items[2], Job)
    assert items[1].line == 2 and items[1].column == 1


def test_load_batch_raises_with_every_problem() -> None:
    path = write("b.yaml", "jobs:\n  - prompt: 1\n  - model: nope\n    prompt: x\n")
    with pytest.raises(BatchError) as info:
        load_batch(path)
    assert [(p.line, p.field) for p in info.value.problems] == [(2, "prompt"), (3, "model")]


def test_load_batch_empty_batch_raises() -> None:
    with pytest.raises(BatchError) as info:
        load_batch(write("b.yaml", ""))
    assert "empty batch" in str(info.value)


def test_extra_models_are_valid() -> None:
    path = write("b.jsonl", '{"prompt": "x", "model": "mine-1"}\n')
    with pytest.raises(BatchError):
        load_batch(path)
    assert [j.model for j in load_batch(path, extra_models=["mine-1"])] == ["mine-1"]


def test_retired_model_is_a_problem() -> None:
    (problem,) = iter_batch(write("b.jsonl", '{"prompt": "x", "model": "claude-opus-4-1"}\n'))
    assert isinstance(problem, Problem) and "retired" in problem.message


def test_yaml_anchors_and_merge_keys() -> None:
    path = write("b.yaml", "jobs:\n  - &base\n    id: a\n    prompt: x\n    max_tokens: 10\n"
                           "  - <<: *base\n    id: b\n")  # fmt: skip
    assert [(j.id, j.max_tokens) for j in load_batch(path)] == [("a", 10), ("b", 10)]


def test_duplicate_key_in_a_yaml_job() -> None:
    path = write("b.yaml", "jobs:\n  - id: a\n    prompt: x\n    prompt: y\n")
    (problem,) = [p for p in iter_batch(path) if isinstance(p, Problem)]
    assert problem.line == 4 and "duplicate key" in problem.message


def test_shape_detection_by_extension_then_content() -> None:
    assert detect_shape(write("a.yml", "")) == "yaml"
    assert detect_shape(write("a.ndjson", "")) == "jsonl"
    assert detect_shape(write("a.txt", '\n {"prompt": "x"}\n')) == "jsonl"
    assert detect_shape(write("b.txt", "jobs: []\n")) == "yaml"
    assert [j.id for j in load_batch(Path("a.txt"))] == ["job-00001"]


def test_summarize_counts_models_priorities_and_tokens() -> None:
    summary = summarize_batch(EXAMPLES / "small.yaml")
    assert summary.ok and summary.jobs == 5
    assert dict(summary.per_model) == {"claude-haiku-4-5": 3, "auto": 1, "claude-sonnet-4-6": 1}
    assert list(summary.per_priority) == ["critical", "high", "normal", "low"]
    assert summary.estimated_input_tokens > 50
    assert summary.to_dict()["ok"] is True


def test_load_batch_iterator_is_fresh_each_call() -> None:
    path = EXAMPLES / "jobs.jsonl"
    assert list(load_batch(path)) == list(load_batch(path))
    jobs = list(load_batch(path))
    assert Job.from_record(jobs[2].to_record()) == jobs[2]
