"""YAML with positions and limits: compose nodes one at a time, find the line of each key, locate errors.

PyYAML's C parser (libyaml) produces the events when it is available; composing a node from
events is done in Python so a caller can stream a long sequence one item at a time, and so the
composer can enforce the limits of `anvil_cli.input_limits` while it streams: nesting depth, the size
of an item once its aliases are expanded (an alias bomb is stopped before it is built), what
aliases add to the whole file, and no alias inside the node it names (a recursive alias).
Values are safe types only; a timestamp stays the text it was written as (JSON has no dates),
and a tagged scalar that does not parse (`!!float abc`) is an error at its line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, Event, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from anvil_cli.input_limits import (
    MAX_ALIAS_CHARS,
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    MAX_INT_LITERAL_CHARS,
    MAX_ITEM_CHARS,
    MAX_ITEM_NODES,
    MAX_REQUEST_BYTES,
)


class YamlLimitError(ComposerError):
    """A limit of `anvil_cli.input_limits` was reached while composing (its message is the whole story)."""

    def __init__(self, message: str, event: Event) -> None:
        super().__init__(None, None, message, event.start_mark)  # type: ignore[arg-type]  # C or Python mark


class YamlValueError(ConstructorError):
    """A scalar that cannot become a value (a huge integer, `!!float abc`)."""

    def __init__(self, message: str, node: Node) -> None:
        super().__init__(None, None, message, node.start_mark)


class _GuardedComposer(Composer):
    """Composer.compose_node with the limits above; sizes count values and scalar characters."""

    if TYPE_CHECKING:  # provided by the parser class it is mixed with

        def peek_event(self) -> Any: ...

    def _init_guard(self) -> None:
        self._depth = 0
        self._item = [0, 0]  # values and characters of the current item, aliases expanded
        self._aliased = [0, 0]  # values and characters added by aliases in this document
        self._sizes: dict[str, tuple[int, int]] = {}  # of each anchored node, once composed

    def start_item(self) -> None:
        """The next node is a new item (a job, a top-level value): its own size budget."""
        self._item = [0, 0]

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        if type(event) is AliasEvent:
            self._alias(event)
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep", event)
        item = self._item  # inline, not a call: this runs for every value of a 100,000-job file
        nodes, chars = item
        item[0] = nodes + 1
        if type(event) is ScalarEvent:
            item[1] = chars + len(event.value)
        if item[0] > MAX_ITEM_NODES or item[1] > MAX_ITEM_CHARS:
            self._too_large(event)
        self._depth += 1
        node = super().compose_node(parent, index)
        self._depth -= 1  # not restored after an error: a composer error ends the document
        if event.anchor is not None:
            self._sizes[event.anchor] = (item[0] - nodes, item[1] - chars)
        return node

    def _alias(self, event: AliasEvent) -> None:
        anchor = event.anchor
        size = self._sizes.get(anchor) if anchor is not None else None
        if size is None:
            if anchor in self.anchors:
                raise YamlLimitError(f"recursive alias: *{anchor} is inside the node &{anchor} names", event)
            return  # an undefined alias: reported by Composer
        self._aliased[0] += size[0]
        self._aliased[1] += size[1]
        if self._aliased[0] > MAX_ALIAS_NODES or self._aliased[1] > MAX_ALIAS_CHARS:
            raise YamlLimitError(
                f"aliases in this file expand to more than {MAX_ALIAS_NODES:,} values or "
                f"{MAX_ALIAS_CHARS:,} characters in all; write the data out or use fewer aliases",
                event,
            )
        self._item[0] += size[0]
        self._item[1] += size[1]
        self._too_large(event)

    def _too_large(self, event: Event) -> None:
        if self._item[0] > MAX_ITEM_NODES:
            raise YamlLimitError(
                f"over {MAX_ITEM_NODES:,} values in one item, counting each alias (*name) as the "
                "values it repeats (an alias bomb?)",
                event,
            )
        if self._item[1] > MAX_ITEM_CHARS:
            raise YamlLimitError(
                f"over {MAX_ITEM_CHARS:,} characters of text in one item, counting each alias (*name) as "
                f"the text it repeats: a job's request must be under {MAX_REQUEST_BYTES / 1e6:,.0f} MB "
                "(the API's limit)",
                event,
            )


def _located(construct: Any) -> Any:
    """A scalar constructor whose failures (`!!float abc`, `!!bool maybe`) are located YAML errors."""

    def located(self: SafeConstructor, node: Node) -> Any:
        try:
            return construct(self, node)
        except (ValueError, TypeError, LookupError, ArithmeticError) as exc:
            raise YamlValueError(f"cannot read this {_tag_name(node)} value: {exc}", node) from None

    return located


def _construct_int(self: SafeConstructor, node: Node) -> int:
    text = str(node.value)
    if len(text) > MAX_INT_LITERAL_CHARS:
        raise YamlValueError(
            f"integer too large ({len(text):,} characters): integers must fit in 64 bits", node
        )
    return self.construct_yaml_int(node)  # type: ignore[arg-type]  # the stubs want a ScalarNode


class _SafeValues(SafeConstructor):
    """SafeConstructor whose scalars fail as located YAML errors; timestamps stay text."""


for _tag, _construct in (
    ("int", _construct_int),
    ("float", SafeConstructor.construct_yaml_float),
    ("bool", SafeConstructor.construct_yaml_bool),
    ("timestamp", SafeConstructor.construct_yaml_str),  # JSON has no dates: keep what was written
):
    _SafeValues.add_constructor(f"tag:yaml.org,2002:{_tag}", _located(_construct))


def _tag_name(node: Node) -> str:
    tag = str(node.tag)
    return "!!" + tag.rsplit(":", 1)[-1] if tag.startswith("tag:yaml.org,2002:") else tag


if yaml.__with_libyaml__:
    from yaml.cyaml import CParser  # type: ignore[attr-defined]  # not re-exported in the stubs

    class NodeLoader(CParser, _GuardedComposer, _SafeValues, Resolver):
        """Events from libyaml, nodes composed in Python (one by one, within the limits)."""

        # libyaml would compose whole documents itself, past the limits: use the Python composer.
        get_single_node = Composer.get_single_node
        get_node = Composer.get_node
        check_node = Composer.check_node

        def __init__(self, stream: IO[bytes] | str) -> None:
            CParser.__init__(self, stream)
            _GuardedComposer.__init__(self)
            _SafeValues.__init__(self)
            Resolver.__init__(self)
            self._init_guard()

else:  # pragma: no cover - PyYAML without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class NodeLoader(Reader, Scanner, Parser, _GuardedComposer, _SafeValues, Resolver):  # type: ignore[no-redef]
        """The pure-Python parser (slower, same behaviour)."""

        def __init__(self, stream: IO[bytes] | str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            _GuardedComposer.__init__(self)
            _SafeValues.__init__(self)
            Resolver.__init__(self)
            self._init_guard()


def next_node(loader: NodeLoader) -> Node:
    """Compose the next node from the event stream (one list item, one key, one value)."""
    loader.start_item()
    node = loader.compose_node(None, None)
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
    """The plain Python value of `node` (safe types only); after a YamlValueError the loader can
    go on with the next node."""
    try:
        return loader.construct_document(node)
    except (ValueError, TypeError, LookupError, ArithmeticError) as exc:  # a safety net: at the item
        raise YamlValueError(f"cannot read this value: {exc}", node) from None
    finally:
        loader.constructed_objects = {}
        loader.recursive_objects = {}
        loader.state_generators = []
        loader.deep_construct = False


def parse_scalar(text: str) -> Any:
    """A YAML scalar as a value (an environment variable's), within the limits; bad YAML → `text`."""
    loader = NodeLoader(text)
    try:
        node = loader.get_single_node()
        return to_python(loader, node) if node is not None else None
    except yaml.YAMLError:
        return text
    finally:
        loader.dispose()


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
        unclosed = _unclosed_quote(err) or _quote_closed_too_late(err, path)
        if unclosed is not None:
            return unclosed
        mark = err.problem_mark or err.context_mark
        text = " ".join(s for s in (err.context, err.problem) if s) or "invalid YAML"
        if not isinstance(err, YamlLimitError | YamlValueError):
            text = f"YAML syntax error: {text}"
        if mark is None:
            return ErrorPosition(text)
        return ErrorPosition(text, int(mark.line) + 1, int(mark.column) + 1)
    return ErrorPosition(f"YAML error: {err}")


def _unclosed_quote(err: yaml.MarkedYAMLError) -> ErrorPosition | None:
    """A quoted string never closed: PyYAML reports where it gave up (often the end of the
    file); the cause is where the string opened, so the error points there."""
    opened, gave_up = err.context_mark, err.problem_mark
    if opened is None or not (err.context or "").startswith("while scanning a quoted scalar"):
        return None
    at_end = "end of stream" in (err.problem or "")
    then = f"the file ends at line {gave_up.line + 1}" if at_end and gave_up else ""
    if not then and gave_up is not None:
        then = f"PyYAML gave up at line {gave_up.line + 1}, column {gave_up.column + 1}: {err.problem}"
    text = f"YAML syntax error: a quoted string opened here is never closed ({then}); add its closing quote"
    return ErrorPosition(text, int(opened.line) + 1, int(opened.column) + 1)


def _quote_closed_too_late(err: yaml.MarkedYAMLError, path: Path | None) -> ErrorPosition | None:
    """A quoted string left open swallows the lines after it up to the next quote, and the
    parser fails just after that quote. When the error's line is where a multi-line quoted
    string ends, the cause is most likely where that string opened: point there."""
    mark = err.problem_mark
    if path is None or mark is None or "quoted" in (err.context or ""):
        return None
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            text = fh.read(mark.index)
    except OSError:
        return None
    opened = None
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            multi_line = token.end_mark.line > token.start_mark.line
            if isinstance(token, yaml.ScalarToken) and token.style in ('"', "'") and multi_line:
                opened = token.start_mark if token.end_mark.line == mark.line else None
    except yaml.YAMLError:
        pass  # the text stops where the error is: the tokens before it are what count
    if opened is None:
        return None
    text = (
        f"YAML syntax error: the quoted string opened here runs on to line {mark.line + 1}, where the"
        f" file stops making sense at column {mark.column + 1} ({err.problem}): is its closing quote missing?"
    )
    return ErrorPosition(text, int(opened.line) + 1, int(opened.column) + 1)


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
    for _ in range(MAX_DEPTH + 1):  # a path is never deeper; a key full of dots cannot make it loop
        if not path:
            break
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return default
