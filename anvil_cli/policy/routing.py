"""Routing for `model: auto`: pick a model from a job's complexity, or guess the complexity."""

from __future__ import annotations

import re
from typing import Any

from anvil_cli.config.settings import Routing
from anvil_cli.jobs.job import Job
from anvil_cli.policy.pricing.table import AUTO

_COMPLEX_WORDS = re.compile(
    r"\b(prove|proof|architect|design|refactor|analy[sz]e|step[- ]by[- ]step|reason|plan|debug)\b",
    re.IGNORECASE,
)
SIMPLE_MAX_CHARS = 2_000
COMPLEX_MIN_CHARS = 20_000


def guess_complexity(request: dict[str, Any]) -> str:
    """A documented heuristic when a job names no complexity.

    complex: tools offered with a long prompt, a prompt over 20,000 characters, or
    reasoning keywords (prove, design, refactor, analyse, debug, plan, step by step);
    simple: under 2,000 characters and no tools; moderate: everything else.
    """
    text = _all_text(request)
    has_tools = bool(request.get("tools"))
    if len(text) >= COMPLEX_MIN_CHARS or _COMPLEX_WORDS.search(text) or (has_tools and len(text) > 8_000):
        return "complex"
    if len(text) < SIMPLE_MAX_CHARS and not has_tools:
        return "simple"
    return "moderate"


def route(complexity: str | None, request: dict[str, Any], routing: Routing) -> str:
    """The model for an `auto` job."""
    level = complexity or guess_complexity(request)
    return str(getattr(routing, level))


def model_for(job: Job, routing: Routing) -> str:
    """The model a job runs on: its own, or the routed one for `auto`."""
    return route(job.complexity, job.request(), routing) if job.model == AUTO else job.model


def fallbacks(model: str, routing: Routing) -> list[str]:
    """Models to try, in order, while `model` is unavailable (open breaker, repeated 529s)."""
    return list(routing.fallbacks.get(model, []))


def _all_text(request: dict[str, Any]) -> str:
    parts: list[str] = []
    system = request.get("system")
    if isinstance(system, str):
        parts.append(system)
    for message in request.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(b.get("text", "") for b in content if isinstance(b, dict))
    return "\n".join(parts)
