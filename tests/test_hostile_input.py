"""Hostile input (issue 11): every case ends in exit 2 with a location, never a traceback.

Each test here failed on the code before the limits of `anvil_cli.limits` existed: a traceback
(exit 1), a run that grew until MemoryError, or a batch that validated and crashed later.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from anvil_cli.batch.job import Job
from anvil_cli.batch.loader import iter_batch, load_batch
from anvil_cli.cli import app
from anvil_cli.limits import MAX_DEPTH, MAX_REQUEST_BYTES

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
    from anvil_cli.batch.jsonl_source import capped_lines

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


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("ANVIL_RUN__TOOL_TIMEOUT_S", ".inf", "not a finite number"),
        ("ANVIL_RUN__TOOL_TIMEOUT_S", "inf", "finite number"),
        ("ANVIL_SCALING__SCALE_UP_THRESHOLD", ".nan", "not a finite number"),
        ("ANVIL_PROVIDER__TIMEOUT_S", "1e300", "less than or equal to 2592000"),
        ("ANVIL_SCALING__QUEUE_SIZE", str(10**40), "integer out of range"),
        ("ANVIL_SCALING__QUEUE_SIZE", "9" * 5000, "scaling.queue_size"),
    ],
)
def test_settings_beyond_the_limits_name_their_variable(var: str, value: str, expected: str) -> None:
    write("b.jsonl", '{"prompt": "x"}\n')
    code, err = validate("b.jsonl", env={var: value})
    assert code == 2
    assert f"environment variable {var}: field '" in err and expected in err


def test_settings_file_inf_and_huge_int_are_located() -> None:
    write("cfg.yaml", "run:\n  tool_timeout_s: .inf\nscaling:\n  queue_size: " + "9" * 5000 + "\n")
    write("b.jsonl", '{"prompt": "x"}\n')
    code, err = validate("b.jsonl", "--config", "cfg.yaml")
    assert code == 2 and "cfg.yaml:4:15: integer too large" in err
    write("cfg.yaml", "run:\n  tool_timeout_s: .inf\n")
    code, err = validate("b.jsonl", "--config", "cfg.yaml")
    assert code == 2 and "cfg.yaml:2: field 'run.tool_timeout_s': not a finite number" in err


# -- templated batches ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Say {w:>999999999}", "width or precision must be at most 1,000"),
        ("Say {w:{n}}", "another placeholder"),
    ],
)
def test_template_formats_cannot_build_huge_prompts(prompt: str, expected: str) -> None:
    write("t.yaml", f"template:\n  prompt: '{prompt}'\ninputs: rows.csv\n")
    write("rows.csv", "w,n\nhi,999999999\n")
    code, err = validate("t.yaml")
    assert code == 2 and "field 'template.prompt'" in err and expected in err


def test_filled_template_over_the_request_limit_is_refused_before_it_is_built() -> None:
    write("t.yaml", "template:\n  prompt: '" + "{w}" * 1_000 + "'\ninputs: rows.jsonl\n")
    write("rows.jsonl", json.dumps({"w": "x" * 40_000}) + "\n")
    code, err = validate("t.yaml")
    assert code == 2 and "rows.jsonl:1: field 'prompt': the filled-in prompt would be over 32 MB" in err


def test_inputs_rows_beyond_the_limits_are_problems() -> None:
    write("t.yaml", "template:\n  prompt: 'Say {w}'\ninputs: rows.jsonl\n")
    write("rows.jsonl", '{"w": ' + "[" * 3000 + "]" * 3000 + '}\n{"w": "\\udc00"}\n')
    code, err = validate("t.yaml")
    assert code == 2
    assert "rows.jsonl:1: nested more than" in err and "rows.jsonl:2: field 'w': not valid Unicode" in err


def test_csv_header_over_the_field_limit_is_a_problem() -> None:
    write("t.yaml", "template:\n  prompt: 'Say {w}'\ninputs: rows.csv\n")
    write("rows.csv", "w" * 200_000 + "\n")
    code, err = validate("t.yaml")
    assert code == 2 and "rows.csv:1: CSV error in the header row" in err


# -- paths and commands ---------------------------------------------------------------------


def test_unusable_paths_and_commands_are_problems_not_tracebacks() -> None:
    code, err = validate("a" * 5000 + ".yaml")
    assert code == 2 and "cannot read: File name too long" in err
    write("t.yaml", "template:\n  prompt: 'Say {w}'\ninputs: \"a\\0.csv\"\n")
    code, err = validate("t.yaml")
    assert code == 2 and "t.yaml:3: field 'inputs': a file path cannot contain a NUL character" in err
    write("t.yaml", "template:\n  prompt: 'Say {w}'\ninputs: " + "a" * 5000 + ".csv\n")
    code, err = validate("t.yaml")
    assert code == 2 and "t.yaml:3: field 'inputs': cannot read inputs file" in err
    write("b.yaml", 'jobs:\n  - prompt: x\n    tools:\n      - name: t\n        anvil_command: ["a\\0"]\n')
    code, err = validate("b.yaml")
    assert code == 2 and "field 'tools[0].anvil_command': a command cannot contain a NUL character" in err


def test_settings_with_a_nul_are_refused_at_their_field() -> None:
    write("cfg.yaml", 'state_dir: "a\\0b"\nalerts:\n  command: "x\\0"\n')
    write("b.jsonl", '{"prompt": "x"}\n')
    code, err = validate("b.jsonl", "--config", "cfg.yaml")
    assert code == 2
    assert "cfg.yaml:1: field 'state_dir': contains a NUL character" in err
    assert "cfg.yaml:3: field 'alerts.command': contains a NUL character" in err


# -- POST /jobs --------------------------------------------------------------------------------


def test_post_jobs_refuses_deep_metadata_and_adds_nothing(tmp_path: Path) -> None:
    """The run survives: the job is refused with a 400's problems, not pickled to a worker."""
    from anvil_cli.engine.control import RunControl
    from anvil_cli.engine.journal import Journal, journal_path
    from anvil_cli.errors import InputError
    from tests.engine_support import write_jsonl_batch

    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a"])
    with Journal.open(tmp_path / ".anvil") as journal:
        run_id = journal.create_run(str(batch), "sha", load_batch(batch))
    control = RunControl(journal_path(tmp_path / ".anvil"), run_id, agent_min=1, agent_max=4)
    try:
        deep = {"id": "deep", "prompt": "hi", "metadata": nested(600)}
        with pytest.raises(InputError) as caught:
            control.add_jobs([{"id": "fine", "prompt": "ok"}, deep])
        (problem,) = caught.value.problems
        assert (problem.job_id, problem.line) == ("deep", 2) and "nested more than" in problem.message
        assert control.job("fine") is None and control.job("deep") is None
    finally:
        control.close()


def test_post_jobs_body_with_a_huge_integer_is_a_400() -> None:
    from anvil_cli.api.bodies import parse_json
    from anvil_cli.api.errors import ApiError

    with pytest.raises(ApiError) as caught:
        parse_json(b'{"prompt": "x", "max_tokens": ' + b"9" * 5000 + b"}")
    assert caught.value.status == 400
