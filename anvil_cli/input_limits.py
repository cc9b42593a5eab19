"""Limits on what Anvil reads from users (batch files, settings, `POST /jobs`) and one check of a
parsed value against them.

A bad input must end in exit 2 with a location, in bounded time and memory; these limits are
what makes that true. Each is far above what a real job needs and well below what breaks
something further down (Python's recursion limit, pickle, the API, SQLite).

`scan_value` walks a parsed value without recursion and returns the first thing wrong with it
(too deep, a huge integer, inf/nan, a lone surrogate, a type JSON cannot hold, a huge key) and
its estimated size as compact JSON.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

# Nesting of lists and mappings in one job or in the settings. Real jobs nest < 15 levels (a
# tool's JSON schema is the deepest part). Every consumer of a job recurses: pickle (to the
# workers), json, deepcopy, repr, PyYAML's composer; at ~600 levels pickle already overflows
# Python's recursion limit (1,000 frames). 64 leaves a wide margin from any call depth.
MAX_DEPTH = 64

# The Messages API refuses requests over 32 MB; a bigger job can never succeed, so it is refused
# here, before anything is sent. Measured as compact UTF-8 JSON, as the SDK sends it.
MAX_REQUEST_BYTES = 32_000_000

# A JSONL line holds one job. JSON escapes (\u00e9, a surrogate pair for an emoji) take up to
# three times the bytes of the UTF-8 they stand for, so a line three times the request limit can
# still be a valid job; a longer one cannot, and is skipped unread so memory stays bounded.
MAX_LINE_BYTES = 3 * MAX_REQUEST_BYTES

# Integers: a literal longer than this is refused before conversion (Python refuses to convert
# longer decimal strings anyway, CVE-2020-10735); any integer must fit in 64 bits, as JSON
# parsers, SQLite and the API expect.
MAX_INT_LITERAL_CHARS = 4300
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# YAML aliases: without a budget, a 1 KB file of nested aliases expands to billions of values.
# Per item (a job, `defaults:`, the settings file): values and text once aliases are expanded.
MAX_ITEM_NODES = 100_000
MAX_ITEM_CHARS = MAX_REQUEST_BYTES
# Per file: what aliases add in all (each alias adds at least one value, so this also bounds the
# number of aliases). Enough for `<<: *common` on 100,000 jobs; not enough to multiply a file.
MAX_ALIAS_NODES = 1_000_000
MAX_ALIAS_CHARS = 256_000_000

# Ids are shown in logs, terminals, file names of results: printable text only, and short.
MAX_ID_CHARS = 256
# Mapping keys are names (metadata keys, schema properties), never documents.
MAX_KEY_CHARS = 1_000

# Control characters (C0, DEL, C1), surrogates, line/paragraph separators and bidi overrides:
# never part of an id; escaped whenever user text is printed.
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
T = TypeVar("T")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class ValueProblem:
    """What is wrong with a value and where: `path` like `metadata.a[3].b` ('' for the root)."""

    path: str
    message: str


# -- showing user text -------------------------------------------------------------------------


def char_name(char: str) -> str:
    """`U+001B` for one character."""
    return f"U+{ord(char):04X}"


def unsafe_char(text: str) -> tuple[int, str] | None:
    """The first control/surrogate/bidi character in `text` and its 1-based position, or None."""
    match = _UNSAFE_CHARS.search(text)
    return None if match is None else (match.start() + 1, match.group())


def plain(text: str) -> str:
    """`text` safe for a terminal: control characters, surrogates and bidi overrides escaped."""
    if text.isascii() and text.isprintable():
        return text
    return _UNSAFE_CHARS.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode(), text)


def plain_tree(value: T) -> T:
    """`value` with every string in it (keys too) made `plain`: what a terminal view renders of
    anything that came from a batch, the journal, a tool or a server."""
    if isinstance(value, str):
        return cast(T, plain(value))
    if isinstance(value, dict):
        return cast(T, {plain(k) if isinstance(k, str) else k: plain_tree(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return cast(T, type(value)(plain_tree(v) for v in value))
    return value


def short_repr(value: Any, limit: int = 60) -> str:
    """A bounded, escaped rendering of a user value for a message (never the whole of it)."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length():,} bits"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


# -- one value ---------------------------------------------------------------------------------


def id_problem(text: str) -> str | None:
    """Why `text` cannot be a job id (too long, control or bidi characters), or None."""
    if len(text) > MAX_ID_CHARS:
        return f"id is longer than {MAX_ID_CHARS} characters ({len(text):,})"
    bad = unsafe_char(text)
    if bad is not None:
        where, char = bad
        return f"ids must be printable text: {char_name(char)} ({_char_kind(char)}) at character {where}"
    return None


def _char_kind(char: str) -> str:
    if "\ud800" <= char <= "\udfff":
        return "a lone surrogate"
    if char in "\u2028\u2029":
        return "a line separator"
    if "\u202a" <= char <= "\u2069":
        return "a bidi control"
    return "a control character"


def int_problem(value: int) -> str | None:
    if INT64_MIN <= value <= INT64_MAX:
        return None
    bounds = f"{INT64_MIN} to {INT64_MAX}"
    return f"integer out of range ({short_repr(value)}): integers must fit in 64 bits, {bounds}"


def text_problem(text: str) -> str | None:
    """A lone surrogate (from a JSON `\\ud800` escape) is not Unicode text and cannot be sent."""
    match = _SURROGATE.search(text)
    if match is None:
        return None
    return (
        f"not valid Unicode: a lone surrogate {char_name(match.group())} at character {match.start() + 1} "
        "(a JSON \\uD800-\\uDFFF escape must be half of a pair)"
    )


def _scalar(value: Any) -> tuple[str | None, int]:
    """(problem, JSON size) of a non-container value."""
    kind = type(value)
    if kind is str:
        if value.isascii():
            return None, len(value) + 2
        problem = text_problem(value)
        return problem, (len(value) if problem else len(value.encode("utf-8"))) + 2
    if kind is bool or value is None:
        return None, 5
    if kind is int:
        return int_problem(value), 20
    if kind is float:
        ok = math.isfinite(value)
        return (None if ok else f"not a finite number ({value!r}): inf and nan are not valid JSON"), 24
    return _type_problem(value), 0


def _type_problem(value: Any) -> str:
    names: dict[type, str] = {bytes: "binary data (!!binary)", set: "a set (!!set)"}
    what = names.get(type(value), f"a {type(value).__name__} value")
    return f"{what} is not allowed: use text, numbers, true/false, null, lists and mappings"


def key_problem(key: Any) -> tuple[str | None, int]:
    """(problem, JSON size) of a mapping key: text (not too long), or a number, true/false, null."""
    if type(key) is str:
        if len(key) > MAX_KEY_CHARS:
            return f"a mapping key is longer than {MAX_KEY_CHARS:,} characters ({len(key):,})", 0
        return _scalar(key)
    if type(key) in (int, float, bool) or key is None:
        problem, size = _scalar(key)
        return problem, size + 2  # written as a string
    return f"a mapping key must be text, got {short_repr(key)}", 0


def _render(trail: tuple[Any, ...] | None) -> str:
    """`metadata.a[3]` from a linked trail ((parent, key) pairs; int keys are list indexes)."""
    parts: list[Any] = []
    while trail is not None:
        trail, key = trail
        parts.append(key)
    path = ""
    for key in reversed(parts):
        if isinstance(key, int) and not isinstance(key, bool):
            path += f"[{key}]"
        else:
            path = f"{path}.{key}" if path else str(key)
    return path


def _plain_size(value: Any) -> int:
    """The JSON size of a value that cannot be a problem (ASCII text, a small int, true/false/null),
    or -1: the fast path that keeps a scan of 100,000 jobs cheap."""
    kind = type(value)
    if kind is str:
        return len(value) + 2 if value.isascii() else -1
    if kind is bool or value is None:
        return 5
    if kind is int:
        return 20 if INT64_MIN <= value <= INT64_MAX else -1
    return -1


def _children_reversed(item: Any) -> Iterator[tuple[Any, Any]]:
    """(key or index, child), last first: the stack then pops the first child first, so the first
    problem in document order is the one found."""
    if type(item) is dict:
        return reversed(item.items())
    return zip(range(len(item) - 1, -1, -1), reversed(item), strict=True)


def scan_value(value: Any, path: str = "", depth: int = 1) -> tuple[ValueProblem | None, int]:
    """The first problem in `value` and its estimated compact-JSON size (without recursion).

    `depth` is the nesting level of `value` itself (1 for a whole job or settings file)."""
    stack: list[tuple[Any, tuple[Any, ...] | None, int]] = [(value, (None, path) if path else None, depth)]
    size = 0
    while stack:
        item, trail, level = stack.pop()
        kind = type(item)
        if not (kind is dict or kind is list or kind is tuple):
            problem, item_size = _scalar(item)
            size += item_size
            if problem:
                return ValueProblem(_render(trail), problem), size
            continue
        if level > MAX_DEPTH:
            return ValueProblem(_render(trail), f"nested more than {MAX_DEPTH} levels deep"), size
        size += 2 + len(item)
        for key, child in _children_reversed(item):
            if kind is dict:
                if type(key) is str and key.isascii() and len(key) <= MAX_KEY_CHARS:
                    size += len(key) + 2
                else:
                    problem, key_size = key_problem(key)
                    if problem:
                        return ValueProblem(_render((trail, str(key)[:MAX_KEY_CHARS])), problem), size
                    size += key_size
                    key = key if type(key) is str else str(key)
            if type(child) is str and child.isascii():  # the common case, inline: no call
                size += len(child) + 2
                continue
            child_size = _plain_size(child)
            if child_size < 0:
                stack.append((child, (trail, key), level + 1))
            else:
                size += child_size
    return None, size
