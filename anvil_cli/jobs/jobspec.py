"""Turn one raw job (a dict from YAML or JSON) into a Job, or into the problems that stop it.

Two raw shapes: Anvil's own job (`id`, `prompt` or `messages`, `model`, ...) and the Message
Batches request (`{"custom_id": ..., "params": {...}}`). A `JobFactory` numbers the jobs in
file order, fills in defaults and remembers ids to catch duplicates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from anvil_cli.errors import Problem
from anvil_cli.input_limits import MAX_REQUEST_BYTES, scan_value, short_repr
from anvil_cli.jobs.checkspec import check_checks
from anvil_cli.jobs.fields import (
    DEFAULT_MAX_TOKENS,
    PASS_THROUGH,
    Checker,
    ModelSet,
    check_complexity,
    check_id,
    check_max_tokens,
    check_messages,
    check_metadata,
    check_model,
    check_priority,
    check_prompt,
    check_system,
    type_name,
    unknown_key,
)
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.schemaspec import SchemaReader
from anvil_cli.policy.pricing.table import AUTO
from anvil_cli.policy.tokens import estimate_input_tokens

JOB_KEYS = (
    "id", "prompt", "messages", "system", "model", "max_tokens", "priority", "complexity",
    "metadata", "output_schema", "checks", *PASS_THROUGH,
)  # fmt: skip
DEFAULT_CHECKS = {
    "model": check_model,
    "max_tokens": check_max_tokens,
    "system": check_system,
    "priority": check_priority,
    "complexity": check_complexity,
    "metadata": check_metadata,
    "checks": check_checks,
    "output_schema": None,  # checked by the factory's SchemaReader (it reads `$file`s)
    **PASS_THROUGH,
}
ANSWER_KEYS = ("output_schema", "checks")  # checked once in `defaults:`/`template:`, then trusted
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MB_CORE = ("model", "max_tokens", "messages", "system")
MB_EXTRA = (
    "tools", "tool_choice", "stop_sequences", "metadata", "thinking", "service_tier",
    "container", "mcp_servers", "context_management", "output_config",
)  # fmt: skip
MB_REJECTED = {
    "stream": "remove 'stream': Anvil decides how each request is sent",
    "temperature": "not accepted by the API version the 2.x SDK sends (2026-10-21); remove it",
    "top_p": "not accepted by the API version the 2.x SDK sends (2026-10-21); remove it",
    "top_k": "not accepted by the API version the 2.x SDK sends (2026-10-21); remove it",
}

Result = Job | list[Problem]
T = TypeVar("T")


def is_message_batch_request(raw: Any) -> bool:
    """True for the Message Batches request shape (`custom_id` and/or `params` at the top)."""
    return isinstance(raw, dict) and ("custom_id" in raw or "params" in raw)


class JobFactory:
    """Builds jobs in file order: numbers them, applies defaults, catches duplicate ids.
    `base_dir`: where an output schema's `$file` is found (the batch file's directory); None
    refuses `$file`."""

    def __init__(self, models: ModelSet, base_dir: Path | None = None) -> None:
        self.models = models
        self.schemas = SchemaReader(base_dir)
        self._trusted: list[Any] = []  # answer keys' values already checked in a section
        self.seq = 0  # jobs seen so far, good or bad
        self._first_line: dict[str, int | None] = {}
        self._defaults: dict[str, Any] | None = None
        self._defaults_bytes = 0

    def _start(self, file: str, line: int | None, lines: dict[str, int] | None) -> tuple[int, Checker]:
        seq = self.seq
        self.seq += 1
        return seq, Checker(file, line, self.models, lines)

    def _defaults_size(self, defaults: dict[str, Any] | None) -> int:
        """The JSON size of the defaults a job inherits (measured once per defaults mapping)."""
        if not defaults:
            return 0
        if defaults is not self._defaults:
            self._defaults, self._defaults_bytes = defaults, scan_value(defaults)[1]
        return self._defaults_bytes

    def trusted(self, value: Any) -> bool:
        """True for a value a section's check produced (a template's rows carry it again)."""
        return any(value is t for t in self._trusted)

    def answer_keys(self, raw: dict[str, Any], defaults: dict[str, Any], ck: Checker) -> dict[str, Any]:
        """`output_schema` and `checks` of a job: its own (checked here) or the defaults'."""
        out: dict[str, Any] = {
            "output_schema": defaults.get("output_schema"),
            "checks": defaults.get("checks", ()),
        }
        for key in ANSWER_KEYS:
            if key in raw:
                value = raw[key]
                trusted = self.trusted(value)
                out[key] = (
                    value
                    if trusted
                    else self.schemas(value, ck)
                    if key == "output_schema"
                    else check_checks(value, ck)
                )
        return out

    def register(self, job_id: str, ck: Checker, field: str) -> None:
        if job_id in self._first_line:
            first = self._first_line[job_id]
            where = f"first at line {first}" if first is not None else "seen before"
            ck.fail(field, f"duplicate id {short_repr(job_id)} ({where})")
        else:
            self._first_line[job_id] = ck.line

    # -- Anvil's job shape ---------------------------------------------------------------------

    def anvil_job(
        self,
        raw: Any,
        *,
        file: str,
        line: int | None,
        lines: dict[str, int] | None = None,
        defaults: dict[str, Any] | None = None,
    ) -> Result:
        """A job from Anvil's own shape; `defaults` (already checked) fill absent keys."""
        seq, ck = self._start(file, line, lines)
        if not isinstance(raw, dict):
            ck.fail(None, f"a job must be a mapping, got {type_name(raw)}")
            return ck.problems
        ck.job_id = check_id(raw.get("id"), ck, f"job-{seq + 1:05d}")
        self.register(ck.job_id, ck, "id")
        if not within_limits(raw, ck, self._defaults_size(defaults)):
            return ck.problems
        for key in raw:
            if key not in JOB_KEYS:
                ck.fail(str(key), unknown_key(str(key), JOB_KEYS))
        messages = _content(raw, ck)
        job = _assemble(raw, defaults or {}, ck, seq, messages, self.answer_keys(raw, defaults or {}, ck))
        if not ck.problems:
            check_context(job, ck, "prompt" if "prompt" in raw else "messages")
        if ck.problems:
            ck.problems.sort(key=lambda p: p.line or 0)  # in file order within the job
            return ck.problems
        return job

    def check_section(
        self, raw: Any, *, file: str, line: int | None, lines: dict[str, int], section: str
    ) -> tuple[dict[str, Any], list[Problem]]:
        """Check a `defaults:` (or `template:`) mapping once; returns its good keys and problems."""
        ck = Checker(file, line, self.models, lines)
        if not isinstance(raw, dict):
            ck.fail(section, f"expected a mapping, got {type_name(raw)}")
            return {}, ck.problems
        if not within_limits(raw, ck, prefix=section):
            return {}, ck.problems
        allowed: dict[str, Any] = dict(DEFAULT_CHECKS)
        if section == "template":
            allowed["prompt"] = None  # a format string, checked against the inputs
        clean: dict[str, Any] = {}
        for key, value in raw.items():
            field = f"{section}.{key}"
            if key not in allowed:
                ck.fail(field, unknown_key(str(key), allowed))
                continue
            before = len(ck.problems)
            check = self.schemas if key == "output_schema" else allowed[key]
            checked = check(value, ck, field) if check is not None else value
            if len(ck.problems) == before:
                clean[str(key)] = checked if key in ANSWER_KEYS else value
                if key in ANSWER_KEYS:
                    self._trusted.append(checked)
        return clean, ck.problems

    # -- the Message Batches request shape -----------------------------------------------------

    def message_batch_job(self, raw: dict[str, Any], *, file: str, line: int | None) -> Result:
        """A job from `{"custom_id": ..., "params": {...}}`, as sent to the Message Batches API."""
        seq, ck = self._start(file, line, None)
        ck.job_id = _custom_id(raw.get("custom_id"), ck, f"job-{seq + 1:05d}")
        self.register(ck.job_id, ck, "custom_id")
        if not within_limits(raw, ck):
            return ck.problems
        for key in raw:
            if key not in ("custom_id", "params"):
                ck.fail(str(key), unknown_key(str(key), ("custom_id", "params")))
        params = raw.get("params")
        if not isinstance(params, dict):
            ck.fail("params", f"expected a mapping of Messages API parameters, got {type_name(params)}")
            return ck.problems
        extra = _mb_params(params, ck)
        job = Job(
            id=ck.job_id,
            seq=seq,
            messages=_required(params, "messages", ck, check_messages, []),
            model=_required(params, "model", ck, check_model, AUTO),
            max_tokens=_required(params, "max_tokens", ck, check_max_tokens, DEFAULT_MAX_TOKENS),
            system=check_system(params.get("system"), ck, "params.system"),
            params=extra,
            line=line,
        )
        if not ck.problems:
            check_context(job, ck, "params.messages")
        return ck.problems if ck.problems else job


def check_context(job: Job, ck: Checker, field: str) -> None:
    """A request past its model's context window fails at once with the API's 400: say so now."""
    problem = ck.models.context_problem(job.model, estimate_input_tokens(job.request()))
    if problem is not None:
        ck.fail(field, problem)


def within_limits(raw: dict[str, Any], ck: Checker, inherited: int = 0, prefix: str = "") -> bool:
    """True when `raw` (a job, or a `defaults:` mapping) is within `anvil_cli.input_limits`; else one
    problem says where it is not, and nothing else is checked (a hostile value is not walked twice).

    The request-size check adds `inherited` (the defaults a job takes) and names the largest key."""
    problem, size = scan_value(raw, prefix)
    if problem is not None:
        ck.fail(problem.path or None, problem.message)
        return False
    total = size + inherited
    if total <= MAX_REQUEST_BYTES:
        return True
    sizes = {key: scan_value(value)[1] for key, value in raw.items()}
    largest = max(sizes, key=lambda key: sizes[key])
    field = f"{prefix}.{largest}" if prefix else str(largest)
    ck.fail(
        field,
        f"the request would be about {total / 1e6:,.1f} MB ({field!r} alone {sizes[largest] / 1e6:,.1f} MB);"
        f" the API refuses requests over {MAX_REQUEST_BYTES / 1e6:,.0f} MB",
    )
    return False


def _content(raw: dict[str, Any], ck: Checker) -> list[dict[str, Any]]:
    has_prompt, has_messages = "prompt" in raw, "messages" in raw
    if has_prompt and has_messages:
        ck.fail("messages", "give either 'prompt' or 'messages', not both")
        return []
    if has_prompt:
        return check_prompt(raw["prompt"], ck)
    if has_messages:
        return check_messages(raw["messages"], ck)
    ck.fail("prompt", "missing: every job needs a 'prompt' (text) or 'messages' (a conversation)")
    return []


def _pick(raw: dict[str, Any], defaults: dict[str, Any], key: str, fallback: Any) -> Any:
    if key in raw:
        return raw[key]
    return defaults.get(key, fallback)


def _assemble(
    raw: dict[str, Any],
    defaults: dict[str, Any],
    ck: Checker,
    seq: int,
    messages: list[dict[str, Any]],
    answer: dict[str, Any],
) -> Job:
    metadata = dict(defaults.get("metadata") or {})
    if "metadata" in raw:
        metadata.update(check_metadata(raw["metadata"], ck, "metadata"))
    params = {
        key: check(_pick(raw, defaults, key, None), ck, key)
        for key, check in PASS_THROUGH.items()
        if key in raw or key in defaults
    }
    assert ck.job_id is not None
    return Job(
        id=ck.job_id,
        seq=seq,
        messages=messages,
        model=check_model(_pick(raw, defaults, "model", AUTO), ck),
        max_tokens=check_max_tokens(_pick(raw, defaults, "max_tokens", DEFAULT_MAX_TOKENS), ck),
        system=check_system(_pick(raw, defaults, "system", None), ck),
        priority=check_priority(_pick(raw, defaults, "priority", "normal"), ck),
        complexity=check_complexity(_pick(raw, defaults, "complexity", None), ck),
        metadata=metadata,
        params=params,
        line=ck.line,
        output_schema=answer["output_schema"],
        checks=tuple(answer["checks"] or ()),
    )


def _custom_id(value: Any, ck: Checker, generated: str) -> str:
    if isinstance(value, str) and CUSTOM_ID.match(value):
        return value
    if value is None:
        ck.fail("custom_id", "missing: a Message Batches request needs a 'custom_id'")
        return generated
    ck.fail(
        "custom_id", f"must match ^[a-zA-Z0-9_-]{{1,64}}$ (letters, digits, _ and -); got {short_repr(value)}"
    )
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 64:
        return str(value)
    return value if isinstance(value, str) else generated


def _required(
    params: dict[str, Any], key: str, ck: Checker, check: Callable[[Any, Checker, str], T], fallback: T
) -> T:
    if key not in params:
        ck.fail(f"params.{key}", "missing: required by the Messages API")
        return fallback
    return check(params[key], ck, f"params.{key}")


def _mb_params(params: dict[str, Any], ck: Checker) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for key, value in params.items():
        field = f"params.{key}"
        if key in MB_CORE:
            continue
        if key in MB_REJECTED:
            ck.fail(field, MB_REJECTED[key])
        elif key not in MB_EXTRA:
            ck.fail(field, unknown_key(str(key), (*MB_CORE, *MB_EXTRA)))
        elif key in PASS_THROUGH:
            extra[key] = PASS_THROUGH[key](value, ck, field)
        else:
            extra[key] = value
    return extra
