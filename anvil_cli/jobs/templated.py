"""Templated batches: one `template:` filled from each row of an `inputs:` file (.csv or .jsonl).

Placeholders are `{column}` (Python format syntax; `{{` and `}}` are literal braces) in the
template's `prompt` and `system`. The job id comes from `id_field:` when given, else from the
row's position (`job-00001`). Problems about rows name the inputs file and its line.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anvil_cli.errors import Problem
from anvil_cli.input_limits import MAX_REQUEST_BYTES, short_repr
from anvil_cli.jobs.fields import type_name
from anvil_cli.jobs.inputs import Row, iter_rows
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.jobspec import JobFactory

INPUT_SUFFIXES = (".csv", ".jsonl", ".ndjson")
# Padding in a placeholder's format (`{name:>20}`) beyond this is no template's intent: the
# width would let a short template build an enormous prompt.
MAX_FORMAT_WIDTH = 1_000
Item = Job | Problem
Expand = Callable[[Job, dict[str, Any], str], Iterator[Item]]  # a job → its variants


@dataclass(frozen=True)
class TemplateSpec:
    """The templated keys of a batch file, as read, with where each was written."""

    batch_path: Path
    label: str
    template: Any
    template_line: int | None
    lines: dict[str, int]
    inputs: Any
    id_field: Any
    key_lines: dict[str, int]

    def problem(self, key: str, message: str, field: str | None = None) -> Problem:
        line = self.lines.get(field or "") or self.key_lines.get(key)
        return Problem(self.label, message, line=line, field=field or key)


@dataclass(frozen=True)
class _Plan:
    """A checked template, ready to fill."""

    base: dict[str, Any]  # job keys other than prompt/system
    texts: dict[str, str]  # "prompt" (and maybe "system") format strings
    placeholders: frozenset[str]
    inputs_path: Path
    id_field: str | None


def iter_templated(
    spec: TemplateSpec, defaults: dict[str, Any], factory: JobFactory, expand: Expand | None = None
) -> Iterator[Item]:
    """Check the template once, then build one job per input row (one per variant with `expand`)."""
    plan, problems = _plan(spec, defaults, factory)
    if problems or plan is None:
        yield from problems
        return
    label = str(plan.inputs_path)
    for row in iter_rows(plan.inputs_path, label, plan.placeholders, plan.id_field):
        if isinstance(row, Problem):
            yield row
        else:
            yield from _row_job(plan, row, label, factory, expand)


def _plan(
    spec: TemplateSpec, defaults: dict[str, Any], factory: JobFactory
) -> tuple[_Plan | None, list[Problem]]:
    if spec.template is None:
        return None, [spec.problem("inputs", "a templated batch needs a 'template:' mapping with a 'prompt'")]
    clean, problems = factory.check_section(
        spec.template, file=spec.label, line=spec.template_line, lines=spec.lines, section="template"
    )
    texts, placeholders = _texts(spec, clean, problems)
    inputs_path = _inputs_path(spec, problems)
    id_field = spec.id_field
    if id_field is not None and not isinstance(id_field, str):
        problems.append(spec.problem("id_field", f"expected a column name, got {type_name(id_field)}"))
    if problems or inputs_path is None:
        return None, problems
    base = {**defaults, **{k: v for k, v in clean.items() if k not in ("prompt", "system")}}
    if "metadata" in defaults and "metadata" in clean:
        base["metadata"] = {**defaults["metadata"], **clean["metadata"]}
    return _Plan(base, texts, frozenset(placeholders), inputs_path, id_field), []


def _texts(
    spec: TemplateSpec, clean: dict[str, Any], problems: list[Problem]
) -> tuple[dict[str, str], set[str]]:
    texts: dict[str, str] = {}
    names: set[str] = set()
    if isinstance(spec.template, dict) and "prompt" not in spec.template:
        problems.append(
            spec.problem("template", "the template needs a 'prompt' (with {column} placeholders)")
        )
    for key in ("prompt", "system"):
        text = clean.get(key)
        if text is None:
            continue
        field = f"template.{key}"
        if not isinstance(text, str) or not text.strip():
            problems.append(spec.problem("template", "expected a non-empty format string", field))
            continue
        texts[key] = text
        names |= _placeholders(text, spec, field, problems)
    return texts, names


def _placeholders(text: str, spec: TemplateSpec, field: str, problems: list[Problem]) -> set[str]:
    """Column names used in `text`; bad format syntax and positional fields are problems."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        problems.append(
            spec.problem("template", f"bad placeholder syntax: {exc} (write {{{{ for a literal {{)", field)
        )
        return set()
    names: set[str] = set()
    for _, name, format_spec, _ in parsed:
        if name is None:
            continue
        problem = _placeholder_problem(name, format_spec)
        if problem:
            problems.append(spec.problem("template", problem, field))
        else:
            names.add(name)
    return names


def _placeholder_problem(name: str, format_spec: str | None) -> str | None:
    if not name or name.isdigit() or "." in name or "[" in name:
        shown = name if len(name) <= 60 else name[:60] + "..."
        return f"placeholder {{{shown}}} must be a column name like {{title}}"
    return _spec_problem(format_spec) if format_spec else None


def _spec_problem(format_spec: str) -> str | None:
    """A format spec may pad or cut (`{name:>20}`), within MAX_FORMAT_WIDTH; never from the data."""
    if "{" in format_spec:
        return f"a placeholder's format may not hold another placeholder: {short_repr(format_spec)}"
    if any(int(n) > MAX_FORMAT_WIDTH for n in re.findall(r"\d+", format_spec)):
        return f"a placeholder's width or precision must be at most {MAX_FORMAT_WIDTH:,}"
    return None


def _filled_size(text: str, values: dict[str, Any]) -> int:
    """An upper bound on the characters of `text` filled from `values` (checked before filling,
    so a long template of placeholders cannot build a string of gigabytes)."""
    total = 0
    for literal, name, format_spec, conversion in string.Formatter().parse(text):
        total += len(literal)
        if name is None:
            continue
        value = values.get(name)
        length = len(value) if isinstance(value, str) else len(repr(value))
        total += length * (10 if conversion in ("r", "a") else 1) + (MAX_FORMAT_WIDTH if format_spec else 0)
    return total


def _inputs_path(spec: TemplateSpec, problems: list[Problem]) -> Path | None:
    inputs = spec.inputs
    if inputs is None:
        problems.append(
            spec.problem("template", "a templated batch needs 'inputs:' (a .csv or .jsonl file)", "inputs")
        )
        return None
    if not isinstance(inputs, str) or not inputs.strip():
        problems.append(spec.problem("inputs", f"expected a file path, got {type_name(inputs)}"))
        return None
    if "\x00" in inputs:
        problems.append(spec.problem("inputs", "a file path cannot contain a NUL character"))
        return None
    path = spec.batch_path.parent / inputs
    if path.suffix.lower() not in INPUT_SUFFIXES:
        problems.append(
            spec.problem("inputs", f"inputs must be a .csv or .jsonl file, got {short_repr(inputs)}")
        )
        return None
    try:
        found = path.is_file()
    except OSError as exc:  # a name too long, a loop of links
        problems.append(spec.problem("inputs", f"cannot read inputs file: {exc.strerror or exc}"))
        return None
    if not found:
        problems.append(spec.problem("inputs", f"inputs file not found: {path} (relative to the batch file)"))
        return None
    return path


def _row_job(plan: _Plan, row: Row, label: str, factory: JobFactory, expand: Expand | None) -> Iterator[Item]:
    raw = dict(plan.base)
    for key, text in plan.texts.items():
        if _filled_size(text, row.values) > MAX_REQUEST_BYTES:
            limit = f"{MAX_REQUEST_BYTES / 1e6:,.0f} MB"
            msg = f"the filled-in {key} would be over {limit} (the API's request limit)"
            yield Problem(label, msg, line=row.line, field=key)
            factory.seq += 1
            return
        try:
            raw[key] = text.format_map(row.values)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            yield Problem(label, f"cannot fill the template's {key}: {exc}", line=row.line, field=key)
            factory.seq += 1
            return
    if plan.id_field is not None:
        raw["id"] = row.values.get(plan.id_field)
    result = factory.anvil_job(raw, file=label, line=row.line)
    if not isinstance(result, Job):
        yield from result
    elif expand is None:
        yield result
    else:
        yield from expand(result, raw, label)
