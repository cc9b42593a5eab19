"""`variants:` of a YAML batch: the same jobs run under several models, prompts or settings.

Each entry is `{name, model?, system?, prompt?, max_tokens?, output_schema?, checks?, metadata?}`;
its keys override the job's and the defaults' (metadata is merged, the variant's winning). A
variant's `prompt` is a format string where `{prompt}` is the job's own prompt (jobs given by
`messages:` cannot take one). Every job becomes one job per variant, job-major (job 1 under each
variant, then job 2, ...), with `Job.variant` set and the id `<id>@<variant>`.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from anvil_cli.errors import Problem
from anvil_cli.input_limits import MAX_REQUEST_BYTES, id_problem, short_repr
from anvil_cli.jobs.checkspec import check_checks
from anvil_cli.jobs.fields import (
    Checker,
    check_max_tokens,
    check_metadata,
    check_model,
    check_system,
    type_name,
    unknown_key,
)
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.jobspec import JobFactory, check_context

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
MAX_VARIANTS = 64
VARIANT_KEYS = ("name", "model", "system", "prompt", "max_tokens", "output_schema", "checks", "metadata")
Item = Job | Problem


@dataclass(frozen=True, slots=True)
class Variant:
    """One checked `variants:` entry: `overrides` are Job fields (already checked values)."""

    name: str
    overrides: dict[str, Any]
    prompt: str | None  # a format string with {prompt}, or None to keep the job's messages


def read_variants(
    raw: Any, factory: JobFactory, *, file: str, line: int | None, lines: dict[str, int]
) -> tuple[tuple[Variant, ...], list[Problem]]:
    """The `variants:` list checked once; problems name `variants[i].field`."""
    ck = Checker(file, line, factory.models, lines)
    if not isinstance(raw, list) or not raw:
        got = "an empty list" if isinstance(raw, list) else type_name(raw)
        ck.fail("variants", f"expected a list of variants, each with a 'name', got {got}")
        return (), ck.problems
    if len(raw) > MAX_VARIANTS:
        ck.fail("variants", f"at most {MAX_VARIANTS} variants, got {len(raw):,}")
        return (), ck.problems
    out: list[Variant] = []
    first: dict[str, int] = {}
    for i, entry in enumerate(raw):
        variant = _variant(entry, ck, factory, f"variants[{i}]")
        if variant is None:
            continue
        if variant.name in first:
            ck.fail(
                f"variants[{i}].name",
                f"duplicate variant name {variant.name!r} (variants[{first[variant.name]}])",
            )
        first.setdefault(variant.name, i)
        out.append(variant)
    return tuple(out), ck.problems


def _variant(entry: Any, ck: Checker, factory: JobFactory, field: str) -> Variant | None:
    if not isinstance(entry, dict):
        ck.fail(field, f"expected a mapping with a 'name', got {type_name(entry)}")
        return None
    before = len(ck.problems)
    for key in entry:
        if key not in VARIANT_KEYS:
            ck.fail(f"{field}.{key}", unknown_key(str(key), VARIANT_KEYS))
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        shown = "missing" if name is None else f"got {short_repr(name)}"
        ck.fail(f"{field}.name", f"a variant needs a name matching ^[A-Za-z0-9_.-]{{1,32}}$; {shown}")
    checks: dict[str, Callable[[Any, Checker, str], Any]] = {
        "model": check_model,
        "system": check_system,
        "max_tokens": check_max_tokens,
        "metadata": check_metadata,
        "checks": check_checks,
        "output_schema": factory.schemas,
    }
    overrides = {
        key: check(entry[key], ck, f"{field}.{key}") for key, check in checks.items() if key in entry
    }
    if "checks" in overrides:
        overrides["checks"] = tuple(overrides["checks"])
    prompt = _prompt(entry["prompt"], ck, f"{field}.prompt") if "prompt" in entry else None
    if len(ck.problems) > before or not isinstance(name, str):
        return None
    return Variant(name, overrides, prompt)


def _prompt(text: Any, ck: Checker, field: str) -> str | None:
    if not isinstance(text, str) or not text.strip():
        ck.fail(field, f"expected a format string with {{prompt}}, got {type_name(text)}")
        return None
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        ck.fail(field, f"bad placeholder syntax: {exc} (write {{{{ for a literal {{)")
        return None
    names = [(name, spec, conv) for _, name, spec, conv in parsed if name is not None]
    for name, spec, conv in names:
        if name != "prompt" or spec or conv:
            shown = short_repr("{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}")
            ck.fail(
                field,
                f"the only placeholder is {{prompt}} (the job's prompt), got {shown};"
                " write {{ for a literal {",
            )
            return None
    if not names:
        ck.fail(field, "a variant's prompt must include {prompt} (the job's own prompt)")
        return None
    return text


class Expander:
    """Turns each job into its variants, numbering them in file order (job-major)."""

    def __init__(self, variants: tuple[Variant, ...], factory: JobFactory) -> None:
        self.variants = variants
        self.factory = factory
        self.seq = 0

    def expand(self, job: Job, raw: dict[str, Any], file: str) -> Iterator[Item]:
        for variant in self.variants:
            yield from self._one(job, raw, file, variant)

    def _one(self, job: Job, raw: dict[str, Any], file: str, variant: Variant) -> Iterator[Item]:
        seq = self.seq
        self.seq += 1
        ck = Checker(file, job.line, self.factory.models)
        ck.job_id = f"{job.id}@{variant.name}"
        self.factory.register(ck.job_id, ck, "id")
        problem = id_problem(ck.job_id)
        if problem is not None:
            ck.fail("id", f"{problem} with its variant's name added")
        fields: dict[str, Any] = {k: v for k, v in variant.overrides.items() if k != "metadata"}
        if "metadata" in variant.overrides:
            fields["metadata"] = {**job.metadata, **variant.overrides["metadata"]}
        if variant.prompt is not None:
            messages = _messages(variant, raw, ck)
            if messages is not None:
                fields["messages"] = messages
        made = dataclasses.replace(job, id=ck.job_id, seq=seq, variant=variant.name, **fields)
        if not ck.problems and ("model" in fields or "messages" in fields or "system" in fields):
            check_context(made, ck, "prompt" if "messages" in fields else "model")
        if ck.problems:
            yield from ck.problems
        else:
            yield made


def _messages(variant: Variant, raw: dict[str, Any], ck: Checker) -> list[dict[str, Any]] | None:
    prompt = raw.get("prompt")
    if not isinstance(prompt, str):
        ck.fail(
            "messages",
            f"variant {variant.name!r} rewrites the prompt, but this job is given by 'messages':"
            " give it a 'prompt', or leave 'prompt' out of the variant",
        )
        return None
    assert variant.prompt is not None
    if len(variant.prompt) + len(prompt) * variant.prompt.count("{prompt}") > MAX_REQUEST_BYTES:
        ck.fail("prompt", f"the prompt of variant {variant.name!r} would be over the API's request limit")
        return None
    return [{"role": "user", "content": variant.prompt.format_map({"prompt": prompt})}]
