"""Hostile settings, templated batches, paths and POST /jobs (issue 11): exit 2 with a location
or a 400, never a traceback. The batch-file cases are in test_hostile_input.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anvil_cli.jobs.loader import load_batch
from tests.test_hostile_input import nested, validate, write

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
    from anvil_cli.engine.journal.store import Journal, journal_path
    from anvil_cli.errors import InputError
    from anvil_cli.session.control import RunControl
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
    from anvil_cli.views.api.bodies import parse_json
    from anvil_cli.views.api.errors import ApiError

    with pytest.raises(ApiError) as caught:
        parse_json(b'{"prompt": "x", "max_tokens": ' + b"9" * 5000 + b"}")
    assert caught.value.status == 400
