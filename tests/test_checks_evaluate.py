"""The deterministic checks (policy/checks/evaluate.py, jsonpath.py) on checks as the batch
reader normalises them: every kind passes and fails, with ignore_case and a detail that says
what was found against what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from anvil_cli.jobs.job import Job
from anvil_cli.jobs.loader import load_batch
from anvil_cli.policy.checks.evaluate import evaluate, evaluate_all
from anvil_cli.policy.checks.jsonpath import JsonPathError, parse_path, render, resolve
from anvil_cli.policy.checks.spec import CheckSpec, specs_of


def specs(tmp_path: Path, *checks: dict[str, Any]) -> tuple[CheckSpec, ...]:
    """The checks as `anvil run` reads them: through a batch file and the loader."""
    path = tmp_path / "batch.yaml"
    path.write_text(yaml.safe_dump({"jobs": [{"id": "a", "prompt": "q", "checks": list(checks)}]}))
    jobs: list[Job] = list(load_batch(path))
    return specs_of(jobs[0].checks)


def one(tmp_path: Path, check: dict[str, Any]) -> CheckSpec:
    return specs(tmp_path, check)[0]


def test_equals_strips_and_compares(tmp_path: Path) -> None:
    spec = one(tmp_path, {"equals": "Paris"})
    ok = evaluate(spec, "  Paris\n")
    assert (ok.passed, ok.score, ok.kind, ok.name) == (True, 1.0, "equals", "equals")
    bad = evaluate(spec, "paris")
    assert (bad.passed, bad.score) == (False, 0.0)
    assert bad.detail == "expected 'Paris', got 'paris'"


def test_equals_ignore_case(tmp_path: Path) -> None:
    spec = one(tmp_path, {"equals": "Paris", "ignore_case": True})
    assert evaluate(spec, "PARIS").passed
    assert evaluate(spec, "Lyon").detail == "expected 'Paris' (any case), got 'Lyon'"


def test_equals_number_is_its_text(tmp_path: Path) -> None:
    assert evaluate(one(tmp_path, {"equals": 42}), "42").passed


def test_contains_each_value(tmp_path: Path) -> None:
    spec = one(tmp_path, {"contains": ["Paris", "France"]})
    assert evaluate(spec, "Paris is in France.").passed
    bad = evaluate(spec, "Paris is in Texas.")
    assert not bad.passed
    assert bad.detail == "missing 'France'"
    assert not evaluate(spec, "paris, france").passed
    single = one(tmp_path, {"contains": "paris", "ignore_case": True})
    assert evaluate(single, "PARIS!").passed


def test_regex_search_and_ignore_case(tmp_path: Path) -> None:
    spec = one(tmp_path, {"regex": r"^\d+$"})
    ok = evaluate(spec, "12345")
    assert ok.passed and ok.detail == "matched '12345'"
    bad = evaluate(spec, "12a")
    assert not bad.passed
    assert bad.detail is not None and bad.detail.startswith(r"no match for /^\d+$/ in '12a'")
    assert evaluate(one(tmp_path, {"regex": "abc", "ignore_case": True}), "xABCx").passed
    assert not evaluate(one(tmp_path, {"regex": "abc"}), "xABCx").passed


def test_no_answer_fails_every_text_check(tmp_path: Path) -> None:
    for check in ({"equals": "x"}, {"contains": "x"}, {"regex": "x"}, {"length": {"min": 1}}):
        result = evaluate(one(tmp_path, check), None)
        assert (result.passed, result.detail) == (False, "no answer")


def test_length_in_chars_and_words(tmp_path: Path) -> None:
    chars = one(tmp_path, {"length": {"min": 3, "max": 5}})
    assert evaluate(chars, " abcd ").passed
    short = evaluate(chars, "ab")
    assert (short.passed, short.detail) == (False, "2 chars, expected at least 3")
    assert evaluate(chars, "abcdef").detail == "6 chars, expected at most 5"
    words = one(tmp_path, {"length": {"max": 2, "unit": "words"}})
    assert evaluate(words, "one two").passed
    assert evaluate(words, "one two three").detail == "3 words, expected at most 2"


def test_json_path_equals(tmp_path: Path) -> None:
    spec = one(tmp_path, {"json_path": "$.sentiment", "equals": "positive"})
    assert evaluate(spec, '{"sentiment": "positive"}').passed
    assert evaluate(spec, '```json\n{"sentiment": "positive"}\n```').passed  # a fenced answer
    bad = evaluate(spec, '{"sentiment": "negative"}')
    assert bad.detail == "$.sentiment: expected 'positive', got 'negative'"
    assert not evaluate(one(tmp_path, {"json_path": "$.n", "equals": 1}), '{"n": true}').passed
    assert evaluate(one(tmp_path, {"json_path": "$.n", "equals": 1}), '{"n": 1.0}').passed


def test_json_path_in(tmp_path: Path) -> None:
    spec = one(tmp_path, {"json_path": "$.items[-1]", "in": ["a", "b"]})
    assert evaluate(spec, '{"items": ["z", "b"]}').passed
    bad = evaluate(spec, '{"items": ["a", "c"]}')
    assert bad.detail == "$.items[-1]: 'c' is not one of ['a', 'b']"


def test_json_path_range_is_inclusive_and_needs_a_number(tmp_path: Path) -> None:
    spec = one(tmp_path, {"json_path": "$['the score']", "range": [1, 5]})
    assert evaluate(spec, '{"the score": 5}').passed
    assert evaluate(spec, '{"the score": 1}').passed
    assert evaluate(spec, '{"the score": 5.5}').detail == "$['the score']: 5.5 is outside [1, 5]"
    assert (
        evaluate(spec, '{"the score": "3"}').detail
        == "$['the score']: '3' is not a number (expected one in [1, 5])"
    )
    assert not evaluate(spec, '{"the score": true}').passed
    open_low = one(tmp_path, {"json_path": "$.n", "range": [None, 0]})
    assert evaluate(open_low, '{"n": -100}').passed
    assert evaluate(open_low, '{"n": 1}').detail == "$.n: 1 is outside [-inf, 0]"


def test_json_path_missing_and_not_json(tmp_path: Path) -> None:
    spec = one(tmp_path, {"json_path": "$.a.b[2]", "equals": 1})
    missing = evaluate(spec, '{"a": {"c": 1}}')
    assert missing.detail == "$.a.b[2]: not found ($.a has no key 'b')"
    short = evaluate(spec, '{"a": {"b": [1]}}')
    assert short.detail == "$.a.b[2]: not found ($.a.b has 1 item(s), no [2])"
    not_json = evaluate(spec, "I think it is 1")
    assert not not_json.passed and not_json.detail is not None
    assert not_json.detail.startswith("the answer is not valid JSON")


def test_json_path_uses_a_parsed_value_when_given(tmp_path: Path) -> None:
    spec = one(tmp_path, {"json_path": "$", "equals": [1, 2]})
    assert evaluate(spec, "not json at all", value=[1, 2]).passed


def test_evaluate_all_in_order_without_judges(tmp_path: Path) -> None:
    all_specs = specs(
        tmp_path,
        {"contains": "a"},
        {"judge": "Is it polite?"},
        {"json_path": "$.x", "equals": 1},
        {"contains": "z", "name": "has z"},
        {"length": {"max": 100}},
    )
    results = evaluate_all(all_specs, '{"x": 1, "a": 2}')
    assert [(r.name, r.passed) for r in results] == [
        ("contains", True),
        ("json_path", True),
        ("has z", False),
        ("length", True),
    ]
    with pytest.raises(ValueError, match="judge"):
        evaluate(all_specs[1], "text")


def test_unknown_kind_fails_rather_than_passes() -> None:
    result = evaluate(CheckSpec.from_json({"name": "x", "kind": "telepathy"}), "text")
    assert not result.passed and result.detail == "unknown kind of check 'telepathy'"


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("$", ()),
        ("$.a", ("a",)),
        ("$.a_b-c[0]", ("a_b-c", 0)),
        ("$['x y'][-1]", ("x y", -1)),
        ('$["q\\"t"]', ('q"t',)),
    ],
)
def test_json_path_subset(path: str, steps: tuple[Any, ...]) -> None:
    assert parse_path(path) == steps
    assert parse_path(render(steps)) == steps


@pytest.mark.parametrize(
    ("path", "where"),
    [("a.b", "starts with '$'"), ("$.", "character 3"), ("$[x]", "character 2"), ("$a", "character 2")],
)
def test_json_path_errors_say_where(path: str, where: str) -> None:
    with pytest.raises(JsonPathError, match=where.replace("$", r"\$")):
        parse_path(path)


def test_resolve_says_why_not_found() -> None:
    assert resolve({"a": [1, 2]}, ("a", 1)) == (True, 2, None)
    assert resolve({"a": "s"}, ("a", 0)) == (False, None, "$.a is a string, not a list")
    assert resolve([1], ("k",)) == (False, None, "$ is a list, not an object")
