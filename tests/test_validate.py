"""`anvil validate`: every bad input is reported with its file and line, exit 2, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anvil_cli.cli import app

REPO = Path(__file__).parents[1]
EXAMPLES = REPO / "examples"
BATCHES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".jsonl") and "inputs" not in p.name)

runner = CliRunner()

# (batch file name, its content, text every report must contain)
BAD = {
    "yaml-syntax": (
        "b.yaml",
        "jobs:\n  - id: a\n    prompt: [unclosed\n",
        ["b.yaml:4:", "YAML syntax error"],
    ),
    "json-syntax": (
        "b.jsonl",
        '{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": }\n',
        ["b.jsonl:2:23: invalid JSON: Expecting value"],
    ),
    "wrong-type": (
        "b.yaml",
        "jobs:\n  - id: a\n    prompt: hi\n    max_tokens: ten\n",
        ["b.yaml:4: job 'a': field 'max_tokens': expected an integer", "got string"],
    ),
    "missing-prompt": (
        "b.yaml",
        "jobs:\n  - id: a\n    model: claude-haiku-4-5\n",
        ["b.yaml:2: job 'a': field 'prompt': missing"],
    ),
    "prompt-and-messages": (
        "b.yaml",
        "jobs:\n  - id: a\n    prompt: hi\n    messages: [{role: user, content: hi}]\n",
        ["b.yaml:4: job 'a': field 'messages'", "not both"],
    ),
    "duplicate-id": (
        "b.yaml",
        "jobs:\n  - id: a\n    prompt: x\n  - id: a\n    prompt: y\n",
        ["b.yaml:4: job 'a': field 'id': duplicate id 'a' (first at line 2)"],
    ),
    "duplicate-id-jsonl": (
        "b.jsonl",
        '{"id": 7, "prompt": "x"}\n\n{"id": "7", "prompt": "y"}\n',
        ["b.jsonl:3: job '7': field 'id': duplicate id '7' (first at line 1)"],
    ),
    "unknown-model": (
        "b.yaml",
        "jobs:\n  - id: a\n    prompt: x\n    model: claude-sonet-4-6\n",
        ["b.yaml:4: job 'a': field 'model'", "did you mean 'claude-sonnet-4-6'?"],
    ),
    "max-tokens-range": (
        "b.jsonl",
        '{"id": "a", "prompt": "x", "max_tokens": 200000}\n',
        ["b.jsonl:1: job 'a': field 'max_tokens': must be from 1 to 128000, got 200000"],
    ),
    "unknown-key": (
        "b.yaml",
        "jobs:\n  - id: a\n    promt: x\n",
        ["b.yaml:3: job 'a': field 'promt': unknown key 'promt'; did you mean 'prompt'?"],
    ),
    "messages-shape": (
        "b.yaml",
        "jobs:\n  - id: a\n    messages:\n      - role: assistant\n        content: hi\n"
        "      - role: system\n        content: 3\n",
        [
            "b.yaml:4: job 'a': field 'messages[0].role': the first message must have role 'user'",
            "b.yaml:6: job 'a': field 'messages[1].role'",
            "b.yaml:7: job 'a': field 'messages[1].content'",
        ],
    ),
    "bad-priority": (
        "b.yaml",
        "jobs:\n  - id: a\n    prompt: x\n    priority: urgent\n",
        ["b.yaml:4: job 'a': field 'priority': must be one of critical, high, normal, low; got 'urgent'"],
    ),
    "bad-complexity": (
        "b.jsonl",
        '{"id": "a", "prompt": "x", "model": "auto", "complexity": "hard"}\n',
        ["b.jsonl:1: job 'a': field 'complexity': must be one of simple, moderate, complex"],
    ),
    "empty-batch": ("b.yaml", "jobs: []\n", ["b.yaml: empty batch"]),
    "empty-file": ("b.jsonl", "\n\n", ["b.jsonl: empty batch"]),
    "not-a-job": ("b.jsonl", '["a"]\n', ["b.jsonl:1: a job must be a mapping, got list"]),
    "bad-custom-id": (
        "b.jsonl",
        '{"custom_id": "has space", "params": {"model": "claude-haiku-4-5", "max_tokens": 5,'
        ' "messages": [{"role": "user", "content": "x"}], "temperature": 1}}\n',
        ["b.jsonl:1: field 'custom_id': must match", "job 'has space': field 'params.temperature'"],
    ),
    "defaults-after-jobs": (
        "b.yaml",
        "jobs:\n  - prompt: x\ndefaults:\n  model: claude-haiku-4-5\n",
        ["b.yaml:3: field 'defaults': 'defaults:' must come before 'jobs:'"],
    ),
    "bad-defaults": (
        "b.yaml",
        "defaults:\n  max_tokens: -1\n  modle: x\njobs:\n  - prompt: x\n",
        ["b.yaml:2: field 'defaults.max_tokens'", "b.yaml:3: field 'defaults.modle'", "did you mean 'model'"],
    ),
    "top-level-typo": ("b.yaml", "job:\n  - prompt: x\n", ["b.yaml:1: field 'job'", "did you mean 'jobs'?"]),
}


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["validate", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_batch_is_reported_with_location(case: str) -> None:
    name, content, expected = BAD[case]
    Path(name).write_text(content, encoding="utf-8")
    code, _, err = _run(name)
    assert code == 2, err
    for text in expected:
        assert text in err
    assert "found; nothing was run." in err
    assert not Path(".anvil").exists()


def test_every_problem_is_reported_not_just_the_first() -> None:
    Path("b.jsonl").write_text(
        '{"id": "a", "prompt": "x", "priority": "top"}\n{"id": "b"}\n'
        '{"id": "c", "prompt": "x", "model": "gpt"}\n'
    )
    code, _, err = _run("b.jsonl")
    assert code == 2
    assert "b.jsonl:1:" in err and "b.jsonl:2:" in err and "b.jsonl:3:" in err
    assert "3 problems found" in err


def test_missing_batch_file() -> None:
    code, _, err = _run("nope.yaml")
    assert code == 2
    assert "nope.yaml: batch file not found" in err


def test_non_utf8_files_name_the_line() -> None:
    Path("b.jsonl").write_bytes(b'{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": "caf\xe9"}\n')
    Path("b.yaml").write_bytes(b"jobs:\n  - id: a\n    prompt: caf\xe9\n")
    code, _, err = _run("b.jsonl")
    assert code == 2 and "b.jsonl:2:" in err and "not valid UTF-8" in err
    code, _, err = _run("b.yaml")
    assert code == 2 and "b.yaml:3" in err and "byte offset" in err
    assert not Path(".anvil").exists()


def test_template_placeholder_missing_from_csv() -> None:
    Path("t.yaml").write_text("template:\n  prompt: 'Review {code} in {langauge}'\ninputs: rows.csv\n")
    Path("rows.csv").write_text("code,language\nx = 1,Python\n")
    code, _, err = _run("t.yaml")
    assert code == 2
    assert "rows.csv:1: field 'langauge': placeholder or id_field {langauge} has no column" in err


def test_template_placeholder_missing_from_jsonl_row() -> None:
    Path("t.yaml").write_text("template:\n  prompt: 'Say {word}'\ninputs: rows.jsonl\nid_field: key\n")
    Path("rows.jsonl").write_text('{"key": "a", "word": "hi"}\n{"key": "b"}\n')
    code, _, err = _run("t.yaml")
    assert code == 2
    assert "rows.jsonl:2: field 'word'" in err


def test_template_inputs_file_missing() -> None:
    Path("t.yaml").write_text("template:\n  prompt: 'Say {word}'\ninputs: gone.csv\n")
    code, _, err = _run("t.yaml")
    assert code == 2
    assert "t.yaml:3: field 'inputs': inputs file not found" in err


def test_config_problems_are_reported_with_the_batch_problems() -> None:
    Path("cfg.yaml").write_text("scaling:\n  workers: many\n  max_agent: 5\n")
    Path("b.yaml").write_text("jobs: []\n")
    code, _, err = _run("b.yaml", "--config", "cfg.yaml")
    assert code == 2
    assert "cfg.yaml:2: field 'scaling.workers'" in err
    assert "cfg.yaml:3: field 'scaling.max_agent': unknown key 'max_agent'; did you mean 'max_agents'?" in err
    assert "b.yaml: empty batch" in err
    assert not Path(".anvil").exists()


def test_missing_config_file_is_an_error() -> None:
    Path("b.jsonl").write_text('{"prompt": "x"}\n')
    code, _, err = _run("b.jsonl", "--config", "missing.yaml")
    assert code == 2
    assert "missing.yaml: config file not found" in err


def test_json_output_on_failure_lists_problems() -> None:
    Path("b.yaml").write_text("jobs:\n  - id: a\n    prompt: x\n    max_tokens: 0\n")
    code, out, _ = _run("b.yaml", "--json")
    data = json.loads(out)
    assert code == 2 and data["ok"] is False
    assert data["problems"][0]["line"] == 4 and data["problems"][0]["field"] == "max_tokens"


@pytest.mark.parametrize("batch", BATCHES, ids=lambda p: p.name)
def test_examples_validate_with_the_repo_config(batch: Path) -> None:
    code, out, err = _run(str(batch), "--config", str(REPO / "anvil.yaml"))
    assert code == 0, err
    assert "jobs, valid" in out
    assert "estimate" in out
    assert not Path(".anvil").exists()


def test_json_summary_of_small_example() -> None:
    code, out, _ = _run(str(EXAMPLES / "small.yaml"), "--json")
    data = json.loads(out)
    assert code == 0
    assert data["jobs"] == 5
    assert data["per_priority"] == {"critical": 1, "high": 1, "normal": 2, "low": 1}
    assert data["per_model"]["auto"] == 1
    assert data["estimated_input_tokens"] > 0


def test_models_added_under_prices_are_accepted() -> None:
    Path("anvil.yaml").write_text("prices:\n  my-model-1: {input: 1, output: 2}\n")
    Path("b.jsonl").write_text('{"prompt": "x", "model": "my-model-1"}\n')
    code, _, err = _run("b.jsonl")
    assert code == 0, err


def test_help_lists_options_and_exit_codes() -> None:
    result = runner.invoke(app, ["validate", "--help"], env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("--config", "--json", "Exit codes", "bad input"):
        assert text in result.stdout
