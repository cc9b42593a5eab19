"""A judge: another model grades an answer against a rubric on a scale. Here the request it is
sent (a Messages API request, Haiku unless the check or `checks.judge_model` names another) and
how its reply becomes a `CheckResult`. The call itself is made by whoever drives the job (a
worker's agent, Message Batches mode), through the same governor, budget and journal as any."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from anvil_cli.policy.checks.record import CheckResult
from anvil_cli.policy.checks.schema import MAX_ERROR_CHARS, check_answer
from anvil_cli.policy.checks.spec import DEFAULT_SCALE, CheckSpec, default_pass_at

JUDGE_MAX_TOKENS = 512
MAX_QUOTED_CHARS = 40_000  # of the question and of the answer quoted to a judge

SYSTEM = (
    "You are a strict, fair grader. You are given a task, an answer to it and a rubric. Grade the"
    " answer against the rubric only, on the scale given, and reply with only a JSON object"
    ' {"score": <number>, "reason": "<one sentence>"}.'
)


def scale_of(spec: CheckSpec) -> tuple[float, float]:
    low, high = spec.get("scale") or DEFAULT_SCALE
    return float(low), float(high)


def pass_at(spec: CheckSpec) -> float:
    low, high = scale_of(spec)
    given = spec.get("pass_at")
    return float(given) if given is not None else default_pass_at(low, high)


def grade_schema(spec: CheckSpec) -> dict[str, Any]:
    """The JSON Schema a judge's reply must match (sent as the structured-output format)."""
    low, high = scale_of(spec)
    integral = low.is_integer() and high.is_integer()
    return {
        "type": "object",
        "properties": {
            "score": {
                "type": "integer" if integral else "number",
                "minimum": int(low) if integral else low,
                "maximum": int(high) if integral else high,
            },
            "reason": {"type": "string"},
        },
        "required": ["score", "reason"],
        "additionalProperties": False,
    }


def judge_model(spec: CheckSpec, default_model: str) -> str:
    model = spec.get("model")
    return model if isinstance(model, str) and model else default_model


def question_of(messages: Sequence[Mapping[str, Any]], system: Any = None) -> str:
    """The task as a judge reads it: the system prompt and the conversation's user turns, text only."""
    parts: list[str] = []
    if isinstance(system, str) and system:
        parts.append(f"[system] {system}")
    elif isinstance(system, list):
        parts.extend(f"[system] {b['text']}" for b in system if isinstance(b, Mapping) and "text" in b)
    for message in messages:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                str(b["text"]) for b in content if isinstance(b, Mapping) and b.get("type") == "text"
            )
    return "\n\n".join(parts)[-MAX_QUOTED_CHARS:]


def judge_request(spec: CheckSpec, model: str, question: str, answer: str | None) -> dict[str, Any]:
    """The Messages API request a judge is sent (without `output_config`: the caller adds the
    format `grade_schema` gives, as it does for any schema)."""
    low, high = scale_of(spec)
    text = (
        f"<task>\n{question}\n</task>\n\n<answer>\n{(answer or '')[:MAX_QUOTED_CHARS]}\n</answer>\n\n"
        f"<rubric>\n{spec.get('rubric', '')}\n</rubric>\n\n"
        f"Grade the answer from {low:g} (worst) to {high:g} (best)."
    )
    return {
        "model": model,
        "max_tokens": JUDGE_MAX_TOKENS,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": text}],
    }


def read_judgement(
    spec: CheckSpec, model: str, reply: str | None, tokens: tuple[int, int] | None = None
) -> CheckResult:
    """A judge's reply as a check result: its score mapped onto 0..1; a reply that is not a
    grade on the scale fails the check (and says why). `tokens`: the call's input tokens
    (cache reads and writes included) and output tokens, kept on the result (`anvil plan
    --sample` prices judges from them)."""
    inp, out = tokens if tokens is not None else (None, None)
    verdict = check_answer(grade_schema(spec), reply)
    if not verdict.valid:
        detail = f"the judge's reply is not a grade: {verdict.error}"[:MAX_ERROR_CHARS]
        return CheckResult(
            spec.name, "judge", False, 0.0, detail=detail, model=model, input_tokens=inp, output_tokens=out
        )
    grade = float(verdict.value["score"])
    low, high = scale_of(spec)
    score = (grade - low) / (high - low) if high > low else 1.0
    reason = str(verdict.value.get("reason", ""))[:MAX_ERROR_CHARS] or None
    return CheckResult(
        spec.name,
        "judge",
        grade >= pass_at(spec),
        score,
        value=grade,
        detail=reason,
        model=model,
        input_tokens=inp,
        output_tokens=out,
    )


def failed_judgement(spec: CheckSpec, model: str, why: str) -> CheckResult:
    """A judge that could not be asked (its call failed for good): the check fails, saying why."""
    return CheckResult(
        spec.name,
        "judge",
        False,
        0.0,
        detail=f"the judge's call failed: {why}"[:MAX_ERROR_CHARS],
        model=model,
    )
