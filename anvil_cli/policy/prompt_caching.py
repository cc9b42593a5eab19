"""Automatic prompt caching: mark a long system prompt or tool list with `cache_control`.

Jobs of one batch usually share their system prompt and tools. Marking the end of that prefix
with `cache_control: {"type": "ephemeral"}` lets the API write it to its cache on the first call
(1.25x the input price) and read it on later ones (0.1x). A request that already carries a
`cache_control` anywhere is left exactly as it is: the user placed their own breakpoints.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

EPHEMERAL: dict[str, str] = {"type": "ephemeral"}


def has_cache_control(request: Mapping[str, Any]) -> bool:
    """Does the request set `cache_control` anywhere (top level, tools, system or messages)?"""
    if "cache_control" in request:
        return True
    parts = [request.get("tools"), request.get("system"), request.get("messages")]
    return '"cache_control"' in json.dumps(parts, default=str)


def _system_chars(system: Any) -> int:
    if isinstance(system, str):
        return len(system)
    if isinstance(system, list):
        return sum(len(str(b.get("text", ""))) for b in system if isinstance(b, Mapping))
    return 0


def _mark_system(system: Any) -> Any:
    if isinstance(system, str):
        return [{"type": "text", "text": system, "cache_control": dict(EPHEMERAL)}]
    blocks = [dict(b) for b in system]
    blocks[-1]["cache_control"] = dict(EPHEMERAL)
    return blocks


def mark_prompt_cache(request: dict[str, Any], min_chars: int) -> dict[str, Any]:
    """`request` with breakpoints after a long tool list and a long system prompt.

    A prefix is long when it has at least `min_chars` characters (tools: their JSON; the
    system prompt counts the tools before it, since the cache covers tools, then system).
    Returns the same object when nothing is marked; never mutates its argument."""
    if has_cache_control(request):
        return request
    tools = request.get("tools")
    system = request.get("system")
    tool_chars = len(json.dumps(tools, separators=(",", ":"))) if tools else 0
    marked = request
    if tools and tool_chars >= min_chars:
        marked = {**marked, "tools": [*tools[:-1], {**tools[-1], "cache_control": dict(EPHEMERAL)}]}
    if system and tool_chars + _system_chars(system) >= min_chars and _system_chars(system) > 0:
        marked = {**marked, "system": _mark_system(system)}
    return marked
