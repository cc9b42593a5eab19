"""Structured answers: the JSON Schema a request asks its answer to match, whether this answer
is to be invalid for it, and the answer's JSON text.

The schema is `output_config.format.schema` (the API's native structured output), else one
quoted in the system prompt by `policy.checks.schema.schema_instruction` (Anvil's way when the
format is not sent natively). An answer is invalid while the conversation has fewer answers
than `@sim{invalid=N}` asks (answers = assistant turns that call no tool: a tool call is not an
answer), or when it is the first answer of a conversation the simulator's `invalid_rate` drew.
A judge's request (its system prompt is `policy.checks.judge.SYSTEM`) quotes the job's prompt,
directives included: `Directives.for_judge` drops those about the job's own answer, and the
invalid rate never draws a judge; `score` is what a judge's answer is for."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

from anvil_cli.policy.checks.judge import SYSTEM as JUDGE_SYSTEM
from anvil_cli.policy.checks.schema import check_answer, schema_instruction
from anvil_cli.sim.answers.directives import Directives
from anvil_cli.sim.answers.schema_fill import Filler

INSTRUCTION = schema_instruction({})[: -len("{}")]  # the text before the quoted schema
FILL_TRIES = 3  # fresh draws before a generated value that fails its own schema is sent anyway
WRONG_VALUES: tuple[Any, ...] = ("sim-invalid", 12345, [], {}, True, None)


def system_text(body: Mapping[str, Any]) -> str:
    system = body.get("system")
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(str(b.get("text", "")) for b in system if isinstance(b, Mapping))
    return ""


def native_schema(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """`output_config.format.schema`, when the request asks for one."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, Mapping) else None
    schema = fmt.get("schema") if isinstance(fmt, Mapping) else None
    return schema if isinstance(schema, Mapping) else None


def requested_schema(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The schema the answer must match: the native format's, else one quoted in the system."""
    native = native_schema(body)
    if native is not None:
        return native
    system = system_text(body)
    at = system.find(INSTRUCTION)
    if at < 0:
        return None
    try:
        quoted, _ = json.JSONDecoder().raw_decode(system, at + len(INSTRUCTION))
    except json.JSONDecodeError:
        return None
    return quoted if isinstance(quoted, Mapping) else None


def is_judge(body: Mapping[str, Any]) -> bool:
    """The request is a judge's (`policy.checks.judge.judge_request` built it)."""
    return JUDGE_SYSTEM in system_text(body)


def answers_given(messages: Sequence[Any]) -> int:
    """The conversation's assistant turns that answered (those that only call tools do not)."""
    count = 0
    for message in messages:
        if not isinstance(message, Mapping) or message.get("role") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(b, Mapping) and b.get("type") == "tool_use" for b in content
        ):
            continue
        count += 1
    return count


def drawn_invalid(messages: Sequence[Any], rate: float, seed: int) -> bool:
    """Whether the conversation is in the `rate` share whose first answer is invalid: a stable
    hash of its first user turn (and the seed), the same whichever attempt or re-ask asks."""
    if rate <= 0:
        return False
    first = next((m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"), None)
    content = first.get("content") if first is not None else None
    key = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def wants_invalid(body: Mapping[str, Any], directives: Directives, rate: float, seed: int) -> bool:
    """This answer is to be invalid for its schema (or, without one, not JSON)."""
    if is_judge(body):
        return False
    given = answers_given(body["messages"])
    return given < directives.invalid or (given == 0 and drawn_invalid(body["messages"], rate, seed))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def valid_text(schema: Mapping[str, Any], rng: random.Random, score: float | None) -> str:
    """A JSON value valid for `schema` (a few fresh draws when one is not: an optional
    property drawn at random can be what breaks a `oneOf`), as text."""
    filler = Filler(schema, rng, score)
    text = _dumps(filler.value(schema))
    for _ in range(FILL_TRIES - 1):
        if check_answer(schema, text).valid:
            break
        text = _dumps(filler.value(schema))
    return text


def _broken_values(root: Mapping[str, Any], value: Any) -> list[Any]:
    """Candidates for an invalid answer, the likeliest first: a required property left out, a
    property of the wrong type, the whole value of the wrong type."""
    out: list[Any] = []
    if isinstance(value, dict):
        for key in root.get("required") or []:
            if key in value:
                out.append({k: v for k, v in value.items() if k != key})
                break
        for key in value:
            out.extend({**value, key: wrong} for wrong in WRONG_VALUES)
            break
    out.extend(WRONG_VALUES)
    return out


def invalid_text(schema: Mapping[str, Any], rng: random.Random, digest: str) -> str:
    """An answer that `check_answer` finds invalid for `schema`: JSON close to a valid value
    when one is, else text that is not JSON."""
    filler = Filler(schema, rng)
    value = filler.value(schema)
    for candidate in _broken_values(filler.resolve(schema), value):
        text = _dumps(candidate)
        if not check_answer(schema, text).valid:
            return text
    return not_json(digest)


def not_json(digest: str) -> str:
    return f"sim:{digest} (the simulator was asked for an invalid answer; this is not JSON)"
