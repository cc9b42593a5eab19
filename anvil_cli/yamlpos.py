"""YAML with positions: compose nodes one at a time, find the line of each key, locate errors.

PyYAML's C parser (libyaml) produces the events when it is available; composing a node from
events is done in Python so a caller can stream a long sequence one item at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

if yaml.__with_libyaml__:
    from yaml.cyaml import CParser  # type: ignore[attr-defined]  # not re-exported in the stubs

    class NodeLoader(CParser, Composer, SafeConstructor, Resolver):
        """Events from libyaml, nodes composed in Python (so items can be composed one by one)."""

        def __init__(self, stream: IO[bytes] | str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:  # pragma: no cover - PyYAML without libyaml

    class NodeLoader(yaml.SafeLoader):  # type: ignore[no-redef]
        """The pure-Python safe loader (slower, same behaviour)."""


def next_node(loader: NodeLoader) -> Node:
    """Compose the next node from the event stream (one list item, one key, one value)."""
    node = loader.compose_node(None, None)  # type: ignore[arg-type]  # the stubs want an index
    if node is None:  # pragma: no cover - only at the end of a document
        raise yaml.composer.ComposerError(None, None, "expected a node", None)
    return node


def next_event_line(loader: NodeLoader) -> int:
    """The 1-based line of the next event."""
    event = loader.peek_event()
    return int(event.start_mark.line) + 1 if event is not None and event.start_mark is not None else 0


def line_of(node: Node) -> int:
    """The 1-based line where `node` starts."""
    return int(node.start_mark.line) + 1


def to_python(loader: NodeLoader, node: Node) -> Any:
    """The plain Python value of `node` (safe types only)."""
    return loader.construct_document(node)


@dataclass(frozen=True, slots=True)
class ErrorPosition:
    """Where a YAML error is: 1-based line and column when known, and a readable message."""

    message: str
    line: int | None = None
    column: int | None = None


def error_position(err: yaml.YAMLError, path: Path | None = None) -> ErrorPosition:
    """Locate a YAML syntax or encoding error (for ReaderError, the byte offset → a line)."""
    if isinstance(err, yaml.reader.ReaderError):
        line = _line_at_offset(path, err.position) if path is not None else None
        reason = err.reason or "cannot decode"
        if "utf-8" in reason.lower() or "codec" in reason:  # undecodable bytes
            reason = f"not valid UTF-8: {reason}; save the file as UTF-8"
        return ErrorPosition(f"{reason} (byte offset {err.position})", line)
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        text = " ".join(s for s in (err.context, err.problem) if s) or "invalid YAML"
        text = f"YAML syntax error: {text}"
        if mark is None:
            return ErrorPosition(text)
        return ErrorPosition(text, int(mark.line) + 1, int(mark.column) + 1)
    return ErrorPosition(f"YAML error: {err}")


def _line_at_offset(path: Path, offset: int) -> int | None:
    """The 1-based line containing byte `offset` of the file at `path`."""
    try:
        with path.open("rb") as fh:
            return fh.read(max(offset, 0)).count(b"\n") + 1
    except OSError:
        return None


def key_text(node: Node) -> str:
    """A mapping key as text (non-string keys are shown as written)."""
    return str(node.value) if isinstance(node, ScalarNode) else f"<{node_kind(node)}>"


def node_kind(node: Node) -> str:
    """The user-facing type of a node: mapping, list or scalar."""
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return "scalar"


def walk_lines(node: Node, max_depth: int = 4, prefix: str = "") -> Iterator[tuple[str, int, int | None]]:
    """(path, line, first line if this key duplicates an earlier one) for every key and item.

    Paths look like `scaling.max_agents` and `messages[0].role` (after `prefix`, when given);
    `<<` merge keys are skipped.
    """
    yield from _walk(node, prefix, max_depth)


def _walk(node: Node, prefix: str, depth: int) -> Iterator[tuple[str, int, int | None]]:
    if depth <= 0:
        return
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_text(key_node)
            if key == "<<":
                continue
            path = f"{prefix}.{key}" if prefix else key
            line = line_of(key_node)
            yield path, line, seen.get(key)
            seen.setdefault(key, line)
            yield from _walk(value_node, path, depth - 1)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            path = f"{prefix}[{index}]"
            yield path, line_of(item), None
            yield from _walk(item, path, depth - 1)


def line_for(lines: dict[str, int], path: str, default: int | None) -> int | None:
    """The line of `path`, else of its nearest ancestor present in `lines`, else `default`."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return default
