"""A small JSON path: `$`, then `.key`, `['key']` (or `["key"]`) and `[N]` (`[-1]` from the
end), e.g. `$.answer.items[0]['first name']`. Enough to point at one value of an answer;
no wildcards, filters or slices."""

from __future__ import annotations

import re
from typing import Any

Step = str | int
MAX_PATH_CHARS = 1_000

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INDEX = re.compile(r"\[(-?\d{1,9})\]")
_QUOTED = re.compile(r"""\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]""")


class JsonPathError(ValueError):
    """A path outside the subset, with the 1-based position where it stops making sense."""


def parse_path(path: str) -> tuple[Step, ...]:
    """The steps of `path` (keys and list indexes), or JsonPathError."""
    if len(path) > MAX_PATH_CHARS:
        raise JsonPathError(f"a JSON path is at most {MAX_PATH_CHARS:,} characters")
    if not path.startswith("$"):
        raise JsonPathError(f"a JSON path starts with '$' (e.g. '$.answer'), got {path[:40]!r}")
    steps: list[Step] = []
    pos = 1
    while pos < len(path):
        char = path[pos]
        if char == ".":
            key = _KEY.match(path, pos + 1)
            if key is None:
                raise JsonPathError(
                    _at(path, pos + 1, "expected a key after '.' (use ['...'] for other keys)")
                )
            steps.append(key.group())
            pos = key.end()
        elif char == "[":
            index = _INDEX.match(path, pos)
            quoted = None if index else _QUOTED.match(path, pos)
            if index is not None:
                steps.append(int(index.group(1)))
                pos = index.end()
            elif quoted is not None:
                text = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
                steps.append(re.sub(r"\\(.)", r"\1", text))
                pos = quoted.end()
            else:
                raise JsonPathError(_at(path, pos, "expected [N] or ['key']"))
        else:
            raise JsonPathError(_at(path, pos, "expected '.key', '[N]' or ['key']"))
    return tuple(steps)


def _at(path: str, pos: int, message: str) -> str:
    return f"bad JSON path at character {pos + 1} of {path[:80]!r}: {message}"


def render(steps: tuple[Step, ...]) -> str:
    """The path of `steps`, written back (`$.a[0]`)."""
    out = "$"
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _KEY.fullmatch(step):
            out += f".{step}"
        else:
            out += "[" + repr(step) + "]"
    return out


def resolve(value: Any, steps: tuple[Step, ...]) -> tuple[bool, Any, str | None]:
    """(found, the value at the path, why not found) in `value` (parsed JSON)."""
    current = value
    for i, step in enumerate(steps):
        where = render(steps[:i]) if i else "$"
        if isinstance(step, int):
            if not isinstance(current, list):
                return False, None, f"{where} is {_kind(current)}, not a list"
            if not -len(current) <= step < len(current):
                return False, None, f"{where} has {len(current)} item(s), no [{step}]"
            current = current[step]
        else:
            if not isinstance(current, dict):
                return False, None, f"{where} is {_kind(current)}, not an object"
            if step not in current:
                return False, None, f"{where} has no key {step!r}"
            current = current[step]
    return True, current, None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number"
