"""An answer against its output schema: read it as JSON (a fenced block allowed), validate it
with `jsonschema` (every answer, even when the API was asked for the format natively: a
provider or model may not enforce every keyword), and the message that re-asks for it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anvil_cli.policy.checks.record import SCHEMA_CHECK, CheckResult

_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)
MAX_ERROR_CHARS = 600  # of a validation error carried into a re-ask, a result or the journal


@dataclass(frozen=True, slots=True)
class SchemaVerdict:
    """An answer read against a schema: its parsed value when it is valid, else the error."""

    value: Any = None
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.error is None

    def as_check(self) -> CheckResult:
        return CheckResult(
            SCHEMA_CHECK, SCHEMA_CHECK, self.valid, 1.0 if self.valid else 0.0, detail=self.error
        )


def schema_problem(schema: Any) -> str | None:
    """Why `schema` is not a usable JSON Schema (for the batch reader), or None."""
    if not isinstance(schema, Mapping):
        return f"an output schema must be a mapping (a JSON Schema), got {type(schema).__name__}"
    # imported here, as in `check_answer`: jsonschema (~30 ms) only for a batch with schemas
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}"[:MAX_ERROR_CHARS]
    return None


def parse_answer(text: str | None) -> tuple[Any, str | None]:
    """The answer's JSON value, or (None, why it is not JSON). A whole-answer ``` fence is
    taken off first (models not held to the format natively often add one)."""
    if text is None or not text.strip():
        return None, "the answer is empty, not JSON"
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return json.loads(body), None
    except json.JSONDecodeError as exc:
        return None, f"the answer is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"


def check_answer(schema: Mapping[str, Any], text: str | None) -> SchemaVerdict:
    """`text` read as JSON and validated against `schema`."""
    value, error = parse_answer(text)
    if error is not None:
        return SchemaVerdict(error=error)
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    found = best_match(Draft202012Validator(schema).iter_errors(value))
    if found is None:
        return SchemaVerdict(value=value)
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in found.absolute_path)
    return SchemaVerdict(error=f"at ${where}: {found.message}"[:MAX_ERROR_CHARS])


def reask_message(schema: Mapping[str, Any], error: str) -> dict[str, Any]:
    """The user turn that asks again for an answer that failed its schema."""
    text = (
        f"Your answer does not match the required JSON Schema ({error}). Reply again with only the"
        f" JSON value, no other text, matching this schema:\n{json.dumps(schema, ensure_ascii=False)}"
    )
    return {"role": "user", "content": text}


def schema_instruction(schema: Mapping[str, Any]) -> str:
    """What a system prompt says when the schema is not sent as the API's native format."""
    return "Answer with only a JSON value, no other text, matching this JSON Schema:\n" + json.dumps(
        schema, ensure_ascii=False
    )
