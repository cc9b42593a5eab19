"""`@sim{key=value, ...}` directives written in a request's text, for deterministic tests."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

MARK = "@sim{"
_PATTERN = re.compile(r"@sim\{([^}]*)\}")
_FAIL_STEP = re.compile(r"^\s*(\d{3})\s*[xX]\s*(\d+)\s*$")
_STATUS = re.compile(r"^\s*(\d{3})\s*(spend)?\s*$")
INVALID_ALWAYS = 1 << 30  # `invalid=always`: more invalid answers than any conversation has turns


class DirectiveError(ValueError):
    """Raised when a `@sim{...}` directive cannot be read."""


@dataclass(slots=True)
class Directives:
    """What the directives of one request ask for; None / empty = not asked."""

    fail: list[tuple[int, int]] = field(default_factory=list)  # (status, attempts) in order
    status: int | None = None
    spend_cap: bool = False  # status=429spend
    retry_after_s: int = 1
    drop: int = 0
    latency_ms: float | None = None
    output_tokens: int | None = None
    input_tokens: int | None = None
    tool: str | None = None
    stream_error: int = 0
    for_model: str | None = None  # status/fail/drop apply only to requests for this model
    endpoint_off: str | None = None  # turn this simulated endpoint off (its calls are dropped)
    endpoint_on: str | None = None  # turn this simulated endpoint back on
    invalid: int = 0  # answers invalid for their schema before a valid one (INVALID_ALWAYS: never valid)
    score: float | None = None  # the value of every numeric `score` property of a structured answer
    say: str | None = None  # the exact text of an answer without a schema

    def for_judge(self) -> Directives:
        """These directives as a judge's request obeys them: it quotes the job's prompt, so the
        keys about the job's own answer (`invalid`, `say`, `tool`, `output_tokens`,
        `input_tokens`) are the job's, not the judge's; the rest apply, `score` sets its grade."""
        return replace(self, invalid=0, say=None, tool=None, output_tokens=None, input_tokens=None)

    def fail_status(self, attempt: int) -> int | None:
        """The status `fail=` asks for on `attempt` (1-based), or None once its steps are used up."""
        seen = 0
        for status, count in self.fail:
            seen += count
            if attempt <= seen:
                return status
        return None


NONE = Directives()


def _int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DirectiveError(f"@sim{{{key}=...}} needs an integer, got {value!r}") from None


def _parse_fail(value: str) -> list[tuple[int, int]]:
    steps = []
    for part in value.split("+"):
        match = _FAIL_STEP.match(part)
        if not match:
            raise DirectiveError(f"@sim{{fail=...}} expects CODExN[+CODExN...], got {value!r}")
        steps.append((int(match.group(1)), int(match.group(2))))
    return steps


def _apply_status(found: Directives, value: str) -> None:
    match = _STATUS.match(value)
    if not match:
        raise DirectiveError(f"@sim{{status=...}} expects a status code or 429spend, got {value!r}")
    found.status = int(match.group(1))
    found.spend_cap = bool(match.group(2)) and found.status == 429


def _apply_answer(found: Directives, key: str, value: str) -> None:
    """The keys that shape what the answer says: `invalid`, `score`, `say`."""
    if key == "invalid":
        found.invalid = INVALID_ALWAYS if value == "always" else max(0, _int(key, value))
    elif key == "score":
        try:
            found.score = float(value)
        except ValueError:
            raise DirectiveError(f"@sim{{score=...}} needs a number, got {value!r}") from None
        if not math.isfinite(found.score):
            raise DirectiveError(f"@sim{{score=...}} needs a finite number, got {value!r}")
    else:
        found.say = _unescaped(value)


def _unescaped(value: str) -> str:
    """`value` as written in the prompt: directives are read from the request's JSON text, where
    a quote or a newline is escaped."""
    try:
        text = json.loads(f'"{value}"')
    except json.JSONDecodeError:
        return value
    return text if isinstance(text, str) else value


def _apply(found: Directives, key: str, value: str) -> None:
    if key == "fail":
        found.fail.extend(_parse_fail(value))
    elif key == "status":
        _apply_status(found, value)
    elif key == "retry_after":
        found.retry_after_s = _int(key, value)
    elif key in ("drop", "stream_error"):
        setattr(found, key, _int(key, value))
    elif key in ("output_tokens", "input_tokens"):
        setattr(found, key, max(0, _int(key, value)))
    elif key == "latency_ms":
        try:
            found.latency_ms = float(value)
        except ValueError:
            raise DirectiveError(f"@sim{{latency_ms=...}} needs a number, got {value!r}") from None
    elif key in ("tool", "for_model", "endpoint_off", "endpoint_on"):
        setattr(found, key, value)
    elif key in ("invalid", "score", "say"):
        _apply_answer(found, key, value)
    else:
        raise DirectiveError(f"unknown @sim directive key {key!r}")


def parse_directives(text: str) -> Directives:
    """Every `@sim{...}` in `text`, merged in order (a later key wins; `fail` steps chain)."""
    found = Directives()
    for match in _PATTERN.finditer(text):
        for item in match.group(1).split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            if not sep:
                raise DirectiveError(f"@sim directive item {item.strip()!r} is not key=value")
            _apply(found, key.strip(), value.strip())
    return found


def request_directives(body: Mapping[str, Any], may_have: bool = True) -> Directives:
    """The directives in a request's system and message text. `may_have=False` (no `@sim{` in the
    raw body) skips the walk."""
    if not may_have:
        return NONE
    text = json.dumps([body.get("system"), body.get("messages")], ensure_ascii=False)
    if MARK not in text:
        return NONE
    return parse_directives(text)
