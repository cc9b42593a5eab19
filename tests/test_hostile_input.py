"""Hostile input (issue 11): every case ends in exit 2 with a location, never a traceback.

Each test here failed on the code before the limits of `anvil_cli.input_limits` existed: a traceback
(exit 1), a run that grew until MemoryError, or a batch that validated and crashed later.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from anvil_cli.cli import app
from anvil_cli.input_limits import MAX_DEPTH, MAX_REQUEST_BYTES
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.loader import iter_batch, load_batch

runner = CliRunner()


def validate(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def write(name: str, text: str) -> str:
    Path(name).write_text(text, encoding="utf-8")
    return name


# -- nesting -----------------------------------------------------------------------------------


def test_metadata_nested_600_deep_is_refused_with_its_field() -> None:
    write("b.jsonl", json.dumps({"id": "x", "prompt": "hi", "metadata": nested(600)}) + "\n")
    code, err = validate("b.jsonl")
    assert code == 2
    assert "b.jsonl:1: job 'x': field 'metadata.a.a" in err
    assert f"nested more than {MAX_DEPTH} levels deep" in err


def test_nesting_up_to_the_limit_loads_and_pickles() -> None:
    # the job mapping is level 1 and metadata level 2: the deepest allowed metadata
    write("b.jsonl", json.dumps({"id": "x", "prompt": "hi", "metadata": nested(MAX_DEPTH - 1)}) + "\n")
    (job,) = load_batch(Path("b.jsonl"))
    assert pickle.loads(pickle.dumps(job)) == job  # what the workers receive


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("b.jsonl", '{"prompt": "x", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}\n", "b.jsonl:1:"),
        ("b.yaml", "jobs:\n  - prompt: x\n    metadata: " + "[" * 5_000 + "]" * 5_000 + "\n", "b.yaml:3:"),
        (
            "b.yaml",
            "jobs:\n  - prompt: x\n    metadata:\n"
            + "".join("  " * (i + 3) + "a:\n" for i in range(200))
            + "  " * 203
            + "b: 1\n",
            "b.yaml:",
        ),
    ],
    ids=["json-line", "yaml-flow", "yaml-block"],
)
def test_deep_json_and_yaml_are_refused(name: str, text: str, where: str) -> None:
    write(name, text)
    code, err = validate(name)
    assert code == 2
    assert where in err and ("nested more than" in err or "nesting depth" in err)


def test_deep_settings_file_is_refused() -> None:
    write("cfg.yaml", "alerts:\n  command: " + "[" * 200 + "]" * 200 + "\n")
    write("b.jsonl", '{"prompt": "x"}\n')
    code, err = validate("b.jsonl", "--config", "cfg.yaml")
    assert code == 2 and "cfg.yaml:2:" in err and "nested more than" in err


# -- YAML aliases ------------------------------------------------------------------------------


def alias_bomb(indent: str) -> str:
    lines = [f'{indent}a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{indent}a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_under_1kb_is_refused_while_streaming() -> None:
    text = "jobs:\n  - prompt: hi\n    metadata:\n" + alias_bomb("      ")
    assert len(text) < 1024
    write("b.yaml", text)
    code, err = validate("b.yaml")
    assert code == 2
    assert "b.yaml:" in err and "alias bomb" in err


def test_alias_bomb_in_defaults_and_in_the_settings() -> None:
    write("b.yaml", "defaults:\n  metadata:\n" + alias_bomb("    ") + "jobs:\n  - prompt: hi\n")
    code, err = validate("b.yaml")
    assert code == 2 and "alias bomb" in err
    write("cfg.yaml", "prices:\n" + alias_bomb("  "))
    write("b.jsonl", '{"prompt": "x"}\n')
    code, err = validate("b.jsonl", "--config", "cfg.yaml")
    assert code == 2 and "cfg.yaml:" in err and "alias bomb" in err


@pytest.mark.parametrize(
    "text",
    [
        "jobs:\n  - &job\n    prompt: hi\n    metadata:\n      again: *job\n",
        "jobs:\n  - prompt: hi\n    metadata: &m\n      self: *m\n",
        "jobs:\n  - prompt: hi\n    metadata: &m [1, [2, *m]]\n",
    ],
)
def test_recursive_alias_is_refused(text: str) -> None:
    write("b.yaml", text)
    code, err = validate("b.yaml")
    assert code == 2
    assert "recursive alias" in err and "b.yaml:" in err


def test_plain_aliases_and_merge_keys_still_work() -> None:
    write(
        "b.yaml",
        "jobs:\n  - &base\n    id: a\n    prompt: hi\n    metadata: &m {team: docs}\n"
        "  - <<: *base\n    id: b\n    metadata: *m\n",
    )
    jobs = list(load_batch(Path("b.yaml")))
    assert [(j.id, j.metadata) for j in jobs] == [("a", {"team": "docs"}), ("b", {"team": "docs"})]


# -- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("b.jsonl", '{"prompt": "x", "max_tokens": ' + "9" * 5000 + "}\n", "b.jsonl:1: an integer literal"),
        (
            "b.yaml",
            "jobs:\n  - prompt: x\n    max_tokens: " + "9" * 5000 + "\n",
            "b.yaml:3:17: integer too large",
        ),
        ("b.yaml", "jobs:\n  - prompt: x\n    metadata: {n: 0x" + "f" * 4000 + "}\n", "field 'metadata.n'"),
        (
            "b.jsonl",
            '{"id": "a", "prompt": "x", "metadata": {"n": 18446744073709551616}}\n',
            "field 'metadata.n'",
        ),
        ("b.jsonl", '{"id": 18446744073709551616, "prompt": "x"}\n', "an integer id must fit in 64 bits"),
    ],
    ids=["json-digits", "yaml-digits", "yaml-hex", "json-2**64", "id-2**64"],
)
def test_huge_integers_are_refused(name: str, text: str, expected: str) -> None:
    write(name, text)
    code, err = validate(name)
    assert code == 2
    assert expected in err


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_a_job_are_refused(value: str) -> None:
    write("b.jsonl", '{"id": "a", "prompt": "x", "metadata": {"f": ' + value + "}}\n")
    code, err = validate("b.jsonl")
    assert code == 2 and "field 'metadata.f': not a finite number" in err


# -- text --------------------------------------------------------------------------------------


def test_lone_surrogate_in_a_prompt_is_invalid_unicode() -> None:
    write("b.jsonl", '{"id": "a", "prompt": "hi \\ud800 there"}\n')
    code, err = validate("b.jsonl")
    assert code == 2
    assert "b.jsonl:1: job 'a': field 'prompt': not valid Unicode: a lone surrogate U+D800" in err


def test_surrogate_pairs_are_fine() -> None:
    write("b.jsonl", '{"id": "a", "prompt": "hi \\ud83d\\ude00"}\n')
    (job,) = load_batch(Path("b.jsonl"))
    assert job.messages[0]["content"] == "hi \U0001f600"


@pytest.mark.parametrize(
    ("raw", "char"), [("a\\u0000b", "U+0000"), ("a\\u001b[31m", "U+001B"), ("a\\nb", "U+000A")]
)
def test_ids_with_control_characters_are_refused(raw: str, char: str) -> None:
    write("b.jsonl", '{"id": "' + raw + '", "prompt": "x"}\n')
    code, err = validate("b.jsonl")
    assert code == 2
    assert f"field 'id': ids must be printable text: {char} (a control character) at character 2" in err
    assert "\x1b" not in err and "\x00" not in err


def test_permissive_ids_stay_valid() -> None:
    write("b.jsonl", json.dumps({"id": "Résumé #3 / 東京 (v2.1) 🙂", "prompt": "x"}) + "\n")
    (job,) = load_batch(Path("b.jsonl"))
    assert job.id == "Résumé #3 / 東京 (v2.1) 🙂"


def test_yaml_dates_stay_text_instead_of_breaking_the_run() -> None:
    write("b.yaml", "jobs:\n  - prompt: hi\n    metadata: {due: 2024-02-03, bad: 2024-02-30}\n")
    (job,) = load_batch(Path("b.yaml"))
    assert job.metadata == {"due": "2024-02-03", "bad": "2024-02-30"}


def test_bad_tagged_scalar_is_located_and_later_jobs_are_still_checked() -> None:
    write(
        "b.yaml", "jobs:\n  - prompt: hi\n    metadata: {f: !!float abc}\n  - prompt: x\n    priority: top\n"
    )
    code, err = validate("b.yaml")
    assert code == 2
    assert "b.yaml:3:19: cannot read this !!float value" in err
    assert "b.yaml:5: job 'job-00002': field 'priority'" in err


def test_yaml_binary_and_sets_are_refused_not_crashing_the_spool() -> None:
    write("b.yaml", "jobs:\n  - prompt: hi\n    metadata: {b: !!binary aGk=, s: !!set {a: null}}\n")
    code, err = validate("b.yaml")
    assert code == 2 and "field 'metadata.b': binary data (!!binary) is not allowed" in err


# -- size --------------------------------------------------------------------------------------


def test_prompt_over_the_request_limit_is_refused() -> None:
    prompt = "x" * (MAX_REQUEST_BYTES + 1)
    write("b.jsonl", json.dumps({"id": "big", "prompt": prompt}) + "\n" + '{"id": "ok", "prompt": "y"}\n')
    code, err = validate("b.jsonl")
    assert code == 2
    assert "b.jsonl:1: job 'big': field 'prompt': the request would be about 32.0 MB" in err
    assert "the API refuses requests over 32 MB" in err


def test_defaults_count_towards_the_request_size() -> None:
    half = "x" * (MAX_REQUEST_BYTES // 2 + 10)
    write("b.yaml", f"defaults:\n  system: {half}\njobs:\n  - prompt: {half}\n")
    problems = [p for p in iter_batch(Path("b.yaml")) if not isinstance(p, Job)]
    assert [p.field for p in problems] == ["prompt"]
    assert "the API refuses requests over 32 MB" in problems[0].message


def test_an_over_long_jsonl_line_is_skipped_unread() -> None:
    from anvil_cli.jobs.jsonl_source import capped_lines

    Path("b.jsonl").write_bytes(b"short\n" + b"y" * 5000 + b"\nlast")
    with Path("b.jsonl").open("rb") as fh:
        assert list(capped_lines(fh, limit=100)) == [(1, b"short\n"), (2, None), (3, b"last")]


# -- the error printer -------------------------------------------------------------------------


def test_markup_in_ids_and_paths_is_printed_as_text() -> None:
    Path("[/bold]").mkdir(parents=True)  # a directory "[" holding "bold]"
    write(
        "[/bold]/b.yaml",
        "jobs:\n  - id: '[/bold]'\n    prompt: ''\n  - id: '[bold]x[/bold]'\n    prompt: ''\n",
    )
    result = runner.invoke(app, ["run", "[/bold]/b.yaml", "--simulate"])
    assert result.exit_code == 2, result.output
    assert "[/bold]/b.yaml:3: job '[/bold]': field 'prompt'" in result.stderr
    assert "job '[bold]x[/bold]'" in result.stderr  # not eaten as markup
    write("[/bold]/ok.jsonl", '{"prompt": "x"}\n')
    result = runner.invoke(app, ["validate", "[/bold]/ok.jsonl"])
    assert result.exit_code == 0 and "[/bold]/ok.jsonl: 1 jobs, valid" in result.stdout


def test_many_problems_are_capped_with_a_count() -> None:
    Path("b.jsonl").write_text('{"id": "a", "prompt": "x"}\n' * 1_500)
    code, err = validate("b.jsonl")
    assert code == 2
    assert err.count("duplicate id") == 50
    assert "... and 1,449 more problems" in err and "1,499 problems found" in err
    result = runner.invoke(app, ["validate", "b.jsonl", "--json"])
    data = json.loads(result.stdout)
    assert data["problem_count"] == 1_499 and len(data["problems"]) == 1_000


def test_run_reports_capped_problems_too() -> None:
    Path("b.jsonl").write_text('{"id": "a", "prompt": "x"}\n' * 120)
    result = runner.invoke(app, ["run", "b.jsonl", "--simulate"])
    assert result.exit_code == 2
    assert result.stderr.count("duplicate id") == 50 and "... and 69 more problems" in result.stderr
