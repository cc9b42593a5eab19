"""Checks for the fields of one job: each takes a raw value, reports problems, returns the clean value.

Hand-written rather than a pydantic model per job: the JSONL path checks 100,000 jobs in
about a second this way.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from anvil_cli.errors import Problem
from anvil_cli.input_limits import INT64_MAX, INT64_MIN, char_name, id_problem, plain, short_repr, unsafe_char
from anvil_cli.jobs.job import COMPLEXITIES, Priority
from anvil_cli.jobs.toolspec import COMMAND_KEY, SANDBOX_KEY, command_argv, sandbox_problems
from anvil_cli.policy.pricing.table import AUTO, builtin_prices, suggest_model
from anvil_cli.yamlpos import line_for

MAX_TOKENS_LIMIT = 128_000
DEFAULT_MAX_TOKENS = 1024
ROLES = ("user", "assistant")
TOOL_CHOICE_TYPES = ("auto", "any", "none", "tool")
PRIORITY_NAMES = tuple(p.label for p in Priority)
CONTEXT_MARGIN = 1.1  # refuse a request estimated more than 10% past the model's context window


def type_name(value: Any) -> str:
    """How a value's type reads to a user: mapping, list, string, integer, number, boolean, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "mapping", list: "list", str: "string", int: "integer", float: "number"}
    return names.get(type(value), type(value).__name__)


def unknown_key(key: str, allowed: Iterable[str]) -> str:
    """'unknown key' with the closest allowed key, when one is close."""
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(allowed)})"
    return f"unknown key {short_repr(key)}{hint}"


@dataclass(frozen=True, slots=True)
class ModelSet:
    """The model ids a batch may name: the built-in ones, those added in `prices:`, and `auto`."""

    allowed: frozenset[str]
    retired: frozenset[str]
    pool: tuple[str, ...]
    windows: Mapping[str, int]  # context window (input tokens) per model; `auto`: the largest

    @classmethod
    def build(cls, extra_models: Collection[str] = ()) -> ModelSet:
        prices = builtin_prices()
        table = prices.models
        extra = frozenset(extra_models)
        retired = frozenset(m for m, p in table.items() if p.retired and m not in extra)
        pool = tuple(m for m in [*table, *sorted(extra - set(table))] if m not in retired)
        windows = {m: prices.context_window(m) for m in pool}
        windows[AUTO] = max(windows.values(), default=prices.default_context_window)
        return cls(frozenset(pool) | {AUTO}, retired, pool, windows)

    def context_problem(self, model: str, input_tokens: int) -> str | None:
        """Why a request of `input_tokens` (estimated) cannot go to `model`, or None. The estimate
        leans high, so only a request clearly past the window (by `CONTEXT_MARGIN`) is refused;
        one just past it gets the API's own answer."""
        window = self.windows.get(model)
        if window is None or input_tokens <= window * CONTEXT_MARGIN:
            return None
        return (
            f"the request is about {input_tokens:,} input tokens (estimated), past the context window "
            f"of {model} ({window:,} tokens): shorten it or pick a model with a larger window"
        )

    def problem(self, model: str) -> str | None:
        """Why `model` cannot be used, or None when it can."""
        if model in self.allowed:
            return None
        if model in self.retired:
            return f"model {model!r} is retired; pick another (or add it under 'prices:' in anvil.yaml)"
        close = suggest_model(model, list(self.pool)) if len(model) <= 200 else None
        if close:
            return f"unknown model {short_repr(model)}; did you mean {close!r}?"
        return f"unknown model {short_repr(model)} (known: {', '.join(self.pool)}, or 'auto')"


class Checker:
    """Collects the problems of one job, each placed at the best line known for its field."""

    __slots__ = ("file", "job_id", "line", "lines", "models", "problems")

    def __init__(
        self, file: str, line: int | None, models: ModelSet, lines: dict[str, int] | None = None
    ) -> None:
        self.file = file
        self.line = line
        self.lines = lines
        self.models = models
        self.job_id: str | None = None
        self.problems: list[Problem] = []

    def fail(self, field: str | None, message: str) -> None:
        line = self.line
        if self.lines and field:
            line = line_for(self.lines, field, self.line)
        self.problems.append(Problem(self.file, message, line=line, job_id=self.job_id, field=field))


# -- scalar fields -----------------------------------------------------------------------------


def check_id(value: Any, ck: Checker, generated: str, field: str = "id") -> str:
    """A job id: non-empty printable text (see `limits.id_problem`) or an integer; absent → `generated`."""
    if value is None:
        return generated
    if isinstance(value, int) and not isinstance(value, bool):
        if INT64_MIN <= value <= INT64_MAX:
            return str(value)
        ck.fail(field, f"an integer id must fit in 64 bits, got {short_repr(value)}")
        return generated
    if isinstance(value, str) and value.strip():
        problem = id_problem(value)
        if problem:
            ck.fail(field, problem)
        return value
    ck.fail(field, f"expected a non-empty string or an integer, got {type_name(value)}")
    return generated


def check_model(value: Any, ck: Checker, field: str = "model") -> str:
    if not isinstance(value, str):
        ck.fail(field, f"expected a model id or 'auto', got {type_name(value)}")
        return AUTO
    problem = ck.models.problem(value)
    if problem:
        ck.fail(field, problem)
    return value


def check_max_tokens(value: Any, ck: Checker, field: str = "max_tokens") -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        ck.fail(field, f"expected an integer from 1 to {MAX_TOKENS_LIMIT}, got {type_name(value)}")
        return DEFAULT_MAX_TOKENS
    if not 1 <= value <= MAX_TOKENS_LIMIT:
        ck.fail(field, f"must be from 1 to {MAX_TOKENS_LIMIT}, got {short_repr(value)}")
    return value


def check_priority(value: Any, ck: Checker, field: str = "priority") -> Priority:
    if isinstance(value, str) and value.lower() in PRIORITY_NAMES:
        return Priority.parse(value)
    shown = short_repr(value) if isinstance(value, str) else type_name(value)
    ck.fail(field, f"must be one of {', '.join(PRIORITY_NAMES)}; got {shown}")
    return Priority.NORMAL


def check_complexity(value: Any, ck: Checker, field: str = "complexity") -> str | None:
    if value is None or value in COMPLEXITIES:
        return value if isinstance(value, str) else None
    shown = short_repr(value) if isinstance(value, str) else type_name(value)
    ck.fail(field, f"must be one of {', '.join(COMPLEXITIES)}; got {shown}")
    return None


def check_mapping(value: Any, ck: Checker, field: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    ck.fail(field, f"expected a mapping, got {type_name(value)}")
    return {}


def check_metadata(value: Any, ck: Checker, field: str = "metadata") -> dict[str, Any]:
    """A mapping whose keys and text values are printable: metadata is shown in terminals
    (`anvil status --by metadata.KEY`), where an escape sequence could retitle or clear it."""
    mapping = check_mapping(value, ck, field)
    problem = _metadata_problem(mapping, field)
    if problem is not None:
        ck.fail(*problem)
    return mapping


def _metadata_problem(value: Any, path: str) -> tuple[str, str] | None:
    """(where, what) of the first unprintable key or text in `value`, or None."""
    pending: list[tuple[Any, str]] = [(value, path)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            bad = unsafe_char(item)
            if bad is not None:
                return where, f"text must be printable: {char_name(bad[1])} at character {bad[0]}"
        elif isinstance(item, dict):
            for key, child in item.items():
                bad = unsafe_char(key) if isinstance(key, str) else None
                if bad is not None:
                    return where, f"keys must be printable: {char_name(bad[1])} in '{plain(key)}'"
                pending.append((child, f"{where}.{plain(str(key))}"))
        elif isinstance(item, list):
            pending.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return None


# -- content -----------------------------------------------------------------------------------


def check_prompt(value: Any, ck: Checker, field: str = "prompt") -> list[dict[str, Any]]:
    if isinstance(value, str) and value.strip():
        return [{"role": "user", "content": value}]
    got = "an empty string" if isinstance(value, str) else type_name(value)
    ck.fail(field, f"expected a non-empty string, got {got}")
    return []


def check_messages(value: Any, ck: Checker, field: str = "messages") -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        got = "an empty list" if isinstance(value, list) else type_name(value)
        ck.fail(field, f"expected a non-empty list of {{role, content}} messages, got {got}")
        return []
    for i, message in enumerate(value):
        _check_message(message, ck, f"{field}[{i}]", first=i == 0)
    return value


def _check_message(message: Any, ck: Checker, field: str, *, first: bool) -> None:
    if not isinstance(message, dict):
        ck.fail(field, f"expected a mapping with role and content, got {type_name(message)}")
        return
    for key in message:
        if key not in ("role", "content"):
            ck.fail(f"{field}.{key}", unknown_key(str(key), ("role", "content")))
    role = message.get("role")
    if role not in ROLES:
        ck.fail(f"{field}.role", f"role must be 'user' or 'assistant'; got {short_repr(role)}")
    elif first and role != "user":
        ck.fail(f"{field}.role", "the first message must have role 'user'")
    _check_content(message.get("content"), ck, f"{field}.content")


def _check_content(content: Any, ck: Checker, field: str) -> None:
    if isinstance(content, str):
        if not content:
            ck.fail(field, "content is an empty string")
        return
    if not isinstance(content, list) or not content:
        got = "an empty list" if isinstance(content, list) else type_name(content)
        ck.fail(field, f"expected a string or a non-empty list of content blocks, got {got}")
        return
    check_blocks(content, ck, field)


def check_blocks(blocks: list[Any], ck: Checker, field: str) -> None:
    """Content blocks: mappings with a string `type`; text blocks need a string `text`."""
    for i, block in enumerate(blocks):
        where = f"{field}[{i}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            ck.fail(where, f"expected a content block mapping with a 'type', got {type_name(block)}")
        elif block["type"] == "text" and not isinstance(block.get("text"), str):
            ck.fail(f"{where}.text", "a text block needs a string 'text'")


def check_system(value: Any, ck: Checker, field: str = "system") -> str | list[dict[str, Any]] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        check_blocks(value, ck, field)
        return value
    ck.fail(field, f"expected a string or a list of text blocks, got {type_name(value)}")
    return None


# -- pass-through API parameters ---------------------------------------------------------------


def check_tools(value: Any, ck: Checker, field: str = "tools") -> Any:
    if not isinstance(value, list):
        ck.fail(field, f"expected a list of tool definitions, got {type_name(value)}")
        return value
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            ck.fail(f"{field}[{i}]", "expected a tool mapping with a string 'name'")
        elif COMMAND_KEY in tool:
            argv = command_argv(tool[COMMAND_KEY])
            if argv is None:
                ck.fail(f"{field}[{i}].{COMMAND_KEY}", "expected a command: a string or a list of strings")
            elif any("\x00" in arg for arg in argv):
                ck.fail(f"{field}[{i}].{COMMAND_KEY}", "a command cannot contain a NUL character")
        if isinstance(tool, dict) and SANDBOX_KEY in tool:
            for sub, message in sandbox_problems(tool[SANDBOX_KEY]):
                ck.fail(f"{field}[{i}].{SANDBOX_KEY}{sub}", message)
    return value


def check_tool_choice(value: Any, ck: Checker, field: str = "tool_choice") -> Any:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in TOOL_CHOICE_TYPES:
        ck.fail(field, f"expected a mapping with type one of {', '.join(TOOL_CHOICE_TYPES)}")
    elif kind == "tool" and not isinstance(value.get("name"), str):
        ck.fail(field, "type 'tool' needs the tool's 'name'")
    return value


def check_stop_sequences(value: Any, ck: Checker, field: str = "stop_sequences") -> Any:
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        ck.fail(field, "expected a list of non-empty strings")
    return value


PASS_THROUGH: dict[str, Callable[[Any, Checker, str], Any]] = {
    "tools": check_tools,
    "tool_choice": check_tool_choice,
    "stop_sequences": check_stop_sequences,
}
