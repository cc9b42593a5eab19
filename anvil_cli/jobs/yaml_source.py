"""YAML batches, streamed: the `jobs:` list is read one item at a time, so memory stays flat.

Top-level keys: `defaults:` and `variants:` (both before `jobs:`), `jobs:`, or `template:` +
`inputs:` (+ `id_field:`) for a templated batch, and an optional free-text `description:`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.events import (
    MappingEndEvent,
    MappingStartEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode

from anvil_cli.errors import Problem
from anvil_cli.input_limits import short_repr
from anvil_cli.jobs.fields import unknown_key
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.jobspec import JobFactory
from anvil_cli.jobs.templated import TemplateSpec, iter_templated
from anvil_cli.jobs.variants import Expander, read_variants
from anvil_cli.yamlpos import (
    NodeLoader,
    error_position,
    key_text,
    line_of,
    next_event_line,
    next_node,
    node_kind,
    to_python,
    walk_lines,
)

TOP_KEYS = ("defaults", "variants", "jobs", "template", "inputs", "id_field", "description")
DEEP_KEYS = ("output_schema", "checks")  # a job's keys whose problems can sit deep inside them
DEEP_LEVELS = 8
Item = Job | Problem


def iter_yaml(path: Path, label: str, factory: JobFactory) -> Iterator[Item]:
    """Jobs and problems in file order; a syntax error ends the stream with its line and column."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        yield Problem(label, f"cannot read: {exc.strerror or exc}")
        return
    loader = NodeLoader(fh)
    try:
        yield from _Document(loader, path, label, factory).items()
    except yaml.YAMLError as exc:
        pos = error_position(exc, path)
        yield Problem(label, pos.message, line=pos.line, column=pos.column)
    finally:
        loader.dispose()
        fh.close()


@dataclass
class _Document:
    """The top-level mapping of one batch file, read key by key."""

    loader: NodeLoader
    path: Path
    label: str
    factory: JobFactory
    defaults: dict[str, Any] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    expander: Expander | None = None

    def items(self) -> Iterator[Item]:
        loader = self.loader
        loader.get_event()  # stream start
        if loader.check_event(StreamEndEvent):
            return  # an empty file: reported as an empty batch
        loader.get_event()  # document start
        if not loader.check_event(MappingStartEvent):
            yield from self._not_a_mapping(next_node(loader))
            return
        loader.get_event()
        while not loader.check_event(MappingEndEvent):
            yield from self._entry(next_node(loader))
        loader.get_event()  # mapping end
        loader.get_event()  # document end
        if not loader.check_event(StreamEndEvent):
            line = next_event_line(loader)
            yield Problem(self.label, "only one YAML document is allowed in a batch file", line=line)
        yield from self._finish()

    def _not_a_mapping(self, node: Node) -> Iterator[Item]:
        if isinstance(node, ScalarNode) and node.tag.endswith(":null"):
            return  # an empty document
        msg = f"expected a mapping with 'jobs:' (or 'template:' and 'inputs:'), got a {node_kind(node)}"
        yield Problem(self.label, msg, line=line_of(node))

    def _entry(self, key_node: Node) -> Iterator[Item]:
        key, line = key_text(key_node), line_of(key_node)
        if key in self.seen:
            msg = f"duplicate key {short_repr(key)} (first at line {self.seen[key]})"
            yield Problem(self.label, msg, line=line, field=key)
        self.seen.setdefault(key, line)
        if key == "jobs" and self.loader.check_event(SequenceStartEvent):
            yield from self._jobs()
            return
        node = next_node(self.loader)
        if key not in TOP_KEYS:
            yield Problem(self.label, unknown_key(key, TOP_KEYS), line=line, field=key)
        elif key == "jobs":
            got = "nothing" if node.tag.endswith(":null") else f"a {node_kind(node)}"
            yield Problem(self.label, f"expected a list of jobs, got {got}", line=line, field=key)
        elif key in ("defaults", "variants"):
            yield from self._section(key, node, line)
        else:
            self.nodes[key] = node

    def _section(self, key: str, node: Node, line: int) -> Iterator[Item]:
        if "jobs" in self.seen:
            msg = f"'{key}:' must come before 'jobs:' (line {self.seen['jobs']}); move it up"
            yield Problem(self.label, msg, line=line, field=key)
            return
        lines = {p: ln for p, ln, _ in walk_lines(node, DEEP_LEVELS, prefix=key)}
        raw = to_python(self.loader, node)
        if key == "variants":
            variants, problems = read_variants(raw, self.factory, file=self.label, line=line, lines=lines)
            self.expander = Expander(variants, self.factory) if variants and not problems else None
            yield from problems
            return
        self.defaults, problems = self.factory.check_section(
            raw, file=self.label, line=line, lines=lines, section="defaults"
        )
        yield from problems

    def _jobs(self) -> Iterator[Item]:
        loader = self.loader
        loader.get_event()  # sequence start
        while not loader.check_event(SequenceEndEvent):
            yield from self._job(next_node(loader))
        loader.get_event()  # sequence end

    def _job(self, node: Node) -> Iterator[Item]:
        label, factory = self.label, self.factory
        lines: dict[str, int] = {}
        for path, line, first in walk_lines(node, 3):
            lines[path] = line
            if first is not None:
                msg = f"duplicate key (first at line {first}); remove one"
                yield Problem(label, msg, line=line, field=path)
        if isinstance(node, MappingNode) and any(k in lines for k in DEEP_KEYS):
            _deep_lines(node, lines)
        try:
            raw = to_python(self.loader, node)
        except ConstructorError as exc:  # this job only (`!!float abc`): the next one can be read
            factory.seq += 1
            pos = error_position(exc)
            yield Problem(label, pos.message, line=pos.line, column=pos.column)
            return
        result = factory.anvil_job(raw, file=label, line=line_of(node), lines=lines, defaults=self.defaults)
        if not isinstance(result, Job):
            yield from result
        elif self.expander is None:
            yield result
        else:
            yield from self.expander.expand(result, raw, label)

    def _finish(self) -> Iterator[Item]:
        template_keys = [k for k in ("template", "inputs", "id_field") if k in self.nodes]
        if not template_keys:
            return
        if "jobs" in self.seen:
            key = template_keys[0]
            msg = "a batch has either 'jobs:' or 'template:' with 'inputs:', not both"
            yield Problem(self.label, msg, line=self.seen[key], field=key)
            return
        expand = self.expander.expand if self.expander is not None else None
        yield from iter_templated(self._template_spec(), self.defaults, self.factory, expand)

    def _template_spec(self) -> TemplateSpec:
        def value(key: str) -> Any:
            node = self.nodes.get(key)
            return to_python(self.loader, node) if node is not None else None

        template_node = self.nodes.get("template")
        lines = (
            {}
            if template_node is None
            else dict((p, ln) for p, ln, _ in walk_lines(template_node, 6, prefix="template"))
        )
        return TemplateSpec(
            batch_path=self.path,
            label=self.label,
            template=value("template"),
            template_line=self.seen.get("template"),
            lines=lines,
            inputs=value("inputs"),
            id_field=value("id_field"),
            key_lines=self.seen,
        )


def _deep_lines(node: MappingNode, lines: dict[str, int]) -> None:
    """The lines inside a job's output schema and checks, past the usual depth."""
    for key_node, value_node in node.value:
        key = key_text(key_node)
        if key in DEEP_KEYS:
            lines.update((p, ln) for p, ln, _ in walk_lines(value_node, DEEP_LEVELS, prefix=key))
