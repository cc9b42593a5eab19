"""The deterministic checks (equals, contains, regex, json_path, length) of one answer: pure
functions of the check's normalised form (`spec.py`) and the answer's text. A judge is a model
call, made by whoever drives the job (`judge.py`), never here."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from anvil_cli.policy.checks.jsonpath import JsonPathError, parse_path, resolve
from anvil_cli.policy.checks.record import CheckResult
from anvil_cli.policy.checks.schema import parse_answer
from anvil_cli.policy.checks.spec import DETERMINISTIC, CheckSpec

MISSING: Any = object()  # no parsed value given: json_path parses the text itself
SHOWN_CHARS = 60  # of an answer or an expected value quoted in a detail


def evaluate(spec: CheckSpec, text: str | None, value: Any = MISSING) -> CheckResult:
    """One deterministic check of `text` (the answer; None when there is none). `value`: the
    answer already parsed as JSON (by its schema check), else json_path parses `text`."""
    if spec.kind not in DETERMINISTIC:
        if spec.is_judge:
            raise ValueError(f"check {spec.name!r} is a judge: it is graded by a model, not here")
        return _result(spec, False, f"unknown kind of check {spec.kind!r}")
    if spec.kind == "json_path":
        return _json_path(spec, text, value)
    if text is None:
        return _result(spec, False, "no answer")
    passed, detail = _TEXT_CHECKS[spec.kind](spec, text)
    return _result(spec, passed, detail)


def evaluate_all(
    specs: Iterable[CheckSpec], text: str | None, value: Any = MISSING
) -> tuple[CheckResult, ...]:
    """Every deterministic check of `specs`, in order (judges are left out)."""
    specs = tuple(specs)
    if value is MISSING and any(s.kind == "json_path" for s in specs):
        parsed, error = parse_answer(text)
        value = MISSING if error is not None else parsed  # each json_path check says why it failed
    return tuple(evaluate(s, text, value) for s in specs if not s.is_judge)


def _result(spec: CheckSpec, passed: bool, detail: str | None) -> CheckResult:
    return CheckResult(spec.name, spec.kind, passed, 1.0 if passed else 0.0, detail=detail)


def _shown(text: str) -> str:
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return repr(text[:SHOWN_CHARS]) + f"... ({len(text):,} characters)"


def _fold(text: str, ignore_case: bool) -> str:
    return text.casefold() if ignore_case else text


def _equals(spec: CheckSpec, text: str) -> tuple[bool, str]:
    expected, answer = str(spec.get("value", "")), text.strip()
    case = bool(spec.get("ignore_case"))
    if _fold(answer, case) == _fold(expected.strip(), case):
        return True, f"equals {_shown(expected)}"
    return False, f"expected {_shown(expected)}{' (any case)' if case else ''}, got {_shown(answer)}"


def _contains(spec: CheckSpec, text: str) -> tuple[bool, str]:
    case = bool(spec.get("ignore_case"))
    values = [str(v) for v in spec.get("values") or ()]
    haystack = _fold(text, case)
    missing = [v for v in values if _fold(v, case) not in haystack]
    if not missing:
        return True, f"contains {', '.join(_shown(v) for v in values)}"
    shown = ", ".join(_shown(v) for v in missing[:5]) + (
        f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    )
    return False, f"missing {shown}{' (any case)' if case else ''}"


def _regex(spec: CheckSpec, text: str) -> tuple[bool, str]:
    pattern = str(spec.get("pattern", ""))
    try:
        found = re.search(pattern, text, re.IGNORECASE if spec.get("ignore_case") else 0)
    except re.error as exc:
        return False, f"bad regular expression {_shown(pattern)}: {exc.msg}"
    if found is None:
        return False, f"no match for /{pattern[:SHOWN_CHARS]}/ in {_shown(text.strip())}"
    return True, f"matched {_shown(found.group())}"


def _length(spec: CheckSpec, text: str) -> tuple[bool, str]:
    unit = spec.get("unit") or "chars"
    answer = text.strip()
    size = len(answer.split()) if unit == "words" else len(answer)
    low, high = spec.get("min"), spec.get("max")
    got = f"{size:,} {unit}"
    if low is not None and size < low:
        return False, f"{got}, expected at least {low:,}"
    if high is not None and size > high:
        return False, f"{got}, expected at most {high:,}"
    return True, got


def _json_path(spec: CheckSpec, text: str | None, value: Any) -> CheckResult:
    path = str(spec.get("path", ""))
    try:
        steps = parse_path(path)
    except JsonPathError as exc:
        return _result(spec, False, str(exc))
    if value is MISSING:
        value, error = parse_answer(text)
        if error is not None:
            return _result(spec, False, error)
    found, at, why = resolve(value, steps)
    if not found:
        return _result(spec, False, f"{path}: not found ({why})")
    passed, detail = _json_op(spec, at)
    return _result(spec, passed, f"{path}: {detail}")


def _json_op(spec: CheckSpec, at: Any) -> tuple[bool, str]:
    op = spec.get("op")
    got = _shown_json(at)
    if op == "equals":
        expected = spec.get("value")
        if _same(at, expected):
            return True, f"{got}"
        return False, f"expected {_shown_json(expected)}, got {got}"
    if op == "in":
        options = list(spec.get("values") or ())
        if any(_same(at, option) for option in options):
            return True, f"{got}"
        listed = ", ".join(_shown_json(o) for o in options[:8]) + (", ..." if len(options) > 8 else "")
        return False, f"{got} is not one of [{listed}]"
    if op == "range":
        low, high = spec.get("min"), spec.get("max")
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        if not _is_number(at):
            return False, f"{got} is not a number (expected one in {bounds})"
        if (low is not None and at < low) or (high is not None and at > high):
            return False, f"{got} is outside {bounds}"
        return True, f"{got} in {bounds}"
    return False, f"unknown json_path operation {op!r}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: `true` is not `1`, `1` is `1.0`; lists and objects compared deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _shown_json(value: Any) -> str:
    if isinstance(value, str):
        return _shown(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return repr(value)


_TEXT_CHECKS = {"equals": _equals, "contains": _contains, "regex": _regex, "length": _length}
