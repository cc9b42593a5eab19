"""A job's `checks:` as users write them, checked and turned into the normalised form of
`anvil_cli.policy.checks.spec` (what `Job.checks` holds and every checker reads).

User forms (each entry may also have `name:`; equals/contains/regex take `ignore_case:`):
`equals: TEXT`, `contains: TEXT | [TEXT, ...]`, `regex: RE`,
`json_path: PATH` with exactly one of `equals: V`, `in: [V, ...]`, `range: [MIN, MAX]`,
`length: {min: N, max: N, unit: chars | words}`,
`judge: {rubric: TEXT, model: ID, scale: [LOW, HIGH], pass_at: N}` or `judge: TEXT`.
Problems name the field as `checks[2].json_path` (after the section's prefix).
"""

from __future__ import annotations

import re
from typing import Any

from anvil_cli.input_limits import short_repr, unsafe_char
from anvil_cli.jobs.fields import Checker, type_name, unknown_key
from anvil_cli.policy.checks.jsonpath import JsonPathError, parse_path
from anvil_cli.policy.checks.record import SCHEMA_CHECK
from anvil_cli.policy.checks.spec import DEFAULT_SCALE, JSON_PATH_OPS, KINDS, LENGTH_UNITS, default_pass_at
from anvil_cli.policy.pricing.table import AUTO

MAX_CHECKS = 100  # per job: each judge is a model call
MAX_NAME_CHARS = 64
CASE_KINDS = ("equals", "contains", "regex")
_EXTRA_KEYS: dict[str, tuple[str, ...]] = {
    "equals": ("ignore_case",),
    "contains": ("ignore_case",),
    "regex": ("ignore_case",),
    "json_path": JSON_PATH_OPS,
    "length": (),
    "judge": (),
}
JUDGE_KEYS = ("rubric", "model", "scale", "pass_at")
LENGTH_KEYS = ("min", "max", "unit")


def check_checks(value: Any, ck: Checker, field: str = "checks") -> tuple[dict[str, Any], ...]:
    """A list of check entries → their normalised forms (problems go to `ck`)."""
    if not isinstance(value, list):
        ck.fail(field, f"expected a list of checks (e.g. '- contains: Paris'), got {type_name(value)}")
        return ()
    if len(value) > MAX_CHECKS:
        ck.fail(field, f"at most {MAX_CHECKS} checks per job, got {len(value):,}")
        return ()
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(value):
        before = len(ck.problems)
        spec = _entry(entry, ck, f"{field}[{i}]")
        if spec is not None and len(ck.problems) == before:
            out.append(spec)
    _name_all(out, value, ck, field)
    return tuple(out)


def _entry(entry: Any, ck: Checker, field: str) -> dict[str, Any] | None:
    if not isinstance(entry, dict):
        ck.fail(field, f"expected a mapping like 'contains: Paris', got {type_name(entry)}")
        return None
    kind = "json_path" if "json_path" in entry else None
    if kind is None:
        found = [k for k in KINDS if k in entry]
        if len(found) != 1:
            what = "none" if not found else " and ".join(found)
            ck.fail(field, f"a check has exactly one of {', '.join(KINDS)} (found {what})")
            return None
        kind = found[0]
    allowed = ("name", kind, *_EXTRA_KEYS[kind])
    for key in entry:
        if key not in allowed:
            ck.fail(f"{field}.{key}", unknown_key(str(key), allowed))
    where = f"{field}.{kind}"
    args: dict[str, Any] = _KIND[kind](entry, ck, where)
    if kind in CASE_KINDS:
        args["ignore_case"] = _ignore_case(entry.get("ignore_case", False), ck, f"{field}.ignore_case")
        if kind == "regex" and isinstance(args.get("pattern"), str):
            _compile(args["pattern"], args["ignore_case"], ck, where)
    return {"name": _name(entry.get("name"), ck, f"{field}.name"), "kind": kind, **args}


def _name(value: Any, ck: Checker, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        ck.fail(field, f"expected a non-empty name, got {type_name(value)}")
        return None
    if len(value) > MAX_NAME_CHARS or unsafe_char(value) is not None:
        ck.fail(field, f"a name is printable text of at most {MAX_NAME_CHARS} characters")
    elif value == SCHEMA_CHECK:
        ck.fail(field, f"{SCHEMA_CHECK!r} is the output schema's check; pick another name")
    return value


def _name_all(specs: list[dict[str, Any]], raw: list[Any], ck: Checker, field: str) -> None:
    """Given names must be unique; the others are their kind, then `kind#2`, `kind#3`..."""
    given: dict[str, int] = {}
    for i, entry in enumerate(raw):
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            if name in given:
                ck.fail(
                    f"{field}[{i}].name", f"duplicate check name {short_repr(name)} (checks[{given[name]}])"
                )
            given.setdefault(name, i)
    taken = set(given)
    for spec in specs:
        if spec["name"] is not None:
            continue
        kind, n = spec["kind"], 1
        name = kind
        while name in taken:
            n += 1
            name = f"{kind}#{n}"
        spec["name"] = name
        taken.add(name)


def _ignore_case(value: Any, ck: Checker, field: str) -> bool:
    if isinstance(value, bool):
        return value
    ck.fail(field, f"expected true or false, got {type_name(value)}")
    return False


def _text(value: Any, ck: Checker, field: str, what: str = "a text") -> str | None:
    """A text to compare with (a number is taken as its text); None after a problem."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    got = "an empty string" if value == "" else type_name(value)
    ck.fail(field, f"expected {what}, got {got}")
    return None


def _equals(entry: dict[str, Any], ck: Checker, field: str) -> dict[str, Any]:
    return {"value": _text(entry["equals"], ck, field)}


def _contains(entry: dict[str, Any], ck: Checker, field: str) -> dict[str, Any]:
    value = entry["contains"]
    if isinstance(value, list):
        if not value:
            ck.fail(field, "expected a text or a non-empty list of texts, got an empty list")
        return {"values": [_text(v, ck, f"{field}[{i}]") for i, v in enumerate(value)]}
    return {"values": [_text(value, ck, field, "a text or a list of texts")]}


def _regex(entry: dict[str, Any], ck: Checker, field: str) -> dict[str, Any]:
    return {"pattern": _text(entry["regex"], ck, field, "a regular expression")}


def _compile(pattern: str, ignore_case: bool, ck: Checker, field: str) -> None:
    try:
        re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        at = f" at position {exc.pos + 1}" if exc.pos is not None else ""
        ck.fail(field, f"bad regular expression{at}: {exc.msg} (in {short_repr(pattern)})")
    except (RecursionError, OverflowError, MemoryError):
        ck.fail(field, "regular expression too complex to compile")


def _json_path(entry: dict[str, Any], ck: Checker, field: str) -> dict[str, Any]:
    path = entry["json_path"]
    if not isinstance(path, str):
        ck.fail(field, f"expected a path like '$.answer.score', got {type_name(path)}")
    else:
        try:
            parse_path(path)
        except JsonPathError as exc:
            ck.fail(field, str(exc))
    base = field.rsplit(".", 1)[0]
    ops = [op for op in JSON_PATH_OPS if op in entry]
    if len(ops) != 1:
        found = "none" if not ops else " and ".join(ops)
        ck.fail(field, f"a json_path check needs exactly one of equals, in, range (found {found})")
        return {"path": path}
    op = ops[0]
    value = entry[op]
    where = f"{base}.{op}"
    if op == "equals":
        return {"path": path, "op": op, "value": value}
    if op == "in":
        if not isinstance(value, list) or not value:
            ck.fail(where, f"expected a non-empty list of values, got {type_name(value)}")
        return {"path": path, "op": op, "values": value}
    low, high = _bounds(value, ck, where, "[min, max]")
    return {"path": path, "op": op, "min": low, "max": high}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _bounds(value: Any, ck: Checker, field: str, shape: str) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        ck.fail(field, f"expected {shape} (either may be null), got {short_repr(value)}")
        return None, None
    low, high = value
    if not all(v is None or _number(v) for v in value):
        ck.fail(field, f"expected {shape} of numbers or null, got {short_repr(value)}")
    elif low is None and high is None:
        ck.fail(field, "give at least one bound (min or max)")
    elif low is not None and high is not None and low > high:
        ck.fail(field, f"min {low} is greater than max {high}")
    return low, high


def _length(entry: dict[str, Any], ck: Checker, field: str) -> dict[str, Any]:
    value = entry["length"]
    if not isinstance(value, dict):
        ck.fail(field, f"expected a mapping like {{min: 10, max: 2000, unit: chars}}, got {type_name(value)}")
        return {"min": None, "max": None, "unit": "chars"}
    for key in value:
        if key not in LENGTH_KEYS:
            ck.fail(f"{field}.{key}", unknown_key(str(key), LENGTH_KEYS))
    low, high = value.get("min"), value.get("max")
    for key, bound in (("min", low), ("max", high)):
        if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool) or bound < 0):
            ck.fail(f"{field}.{key}", f"expected a whole number of at least 0, got {short_repr(bound)}")
    if low is None and high is None:
        ck.fail(field, "give min, max or both")
    elif isinstance(low, int) and isinstance(high, int) and low > high:
        ck.fail(field, f"min {low} is greater than max {high}")
    unit = value.get("unit", "chars")
    if unit not in LENGTH_UNITS:
        shown = short_repr(unit) if isinstance(unit, str) else type_name(unit)
        ck.fail(f"{field}.unit", f"must be one of {', '.join(LENGTH_UNITS)}; got {shown}")
    return {"min": low, "max": high, "unit": unit}


def _judge(entry: dict[str, Any], ck: Checker, field: str) -> dict[str, Any]:
    value = entry["judge"]
    if isinstance(value, str):
        value = {"rubric": value}
    if not isinstance(value, dict):
        ck.fail(field, f"expected a rubric (text) or a mapping with 'rubric', got {type_name(value)}")
        return {}
    for key in value:
        if key not in JUDGE_KEYS:
            ck.fail(f"{field}.{key}", unknown_key(str(key), JUDGE_KEYS))
    rubric = value.get("rubric")
    if not isinstance(rubric, str) or not rubric.strip():
        ck.fail(f"{field}.rubric", f"expected the rubric as a non-empty text, got {type_name(rubric)}")
    model = value.get("model")
    if model is not None:
        problem = (
            ck.models.problem(model)
            if isinstance(model, str)
            else f"expected a model id, got {type_name(model)}"
        )
        if problem is None and model == AUTO:
            problem = "a judge needs a model id, not 'auto' (leave it out for checks.judge_model)"
        if problem is not None:
            ck.fail(f"{field}.model", problem)
    scale = _scale(value.get("scale"), ck, f"{field}.scale")
    given = value.get("pass_at")
    pass_at = default_pass_at(*scale)
    if given is not None:
        if not _number(given) or not scale[0] <= given <= scale[1]:
            ck.fail(
                f"{field}.pass_at",
                f"expected a number from {scale[0]} to {scale[1]}, got {short_repr(given)}",
            )
        else:
            pass_at = given
    return {"rubric": rubric, "model": model, "scale": list(scale), "pass_at": pass_at}


def _scale(value: Any, ck: Checker, field: str) -> tuple[Any, Any]:
    if value is None:
        return DEFAULT_SCALE
    if not isinstance(value, list) or len(value) != 2 or not all(_number(v) for v in value):
        ck.fail(field, f"expected [low, high] (two numbers), got {short_repr(value)}")
        return DEFAULT_SCALE
    if value[0] >= value[1]:
        ck.fail(field, f"low {value[0]} must be below high {value[1]}")
        return DEFAULT_SCALE
    return value[0], value[1]


_KIND = {
    "equals": _equals,
    "contains": _contains,
    "regex": _regex,
    "json_path": _json_path,
    "length": _length,
    "judge": _judge,
}
