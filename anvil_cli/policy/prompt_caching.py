"""Automatic prompt caching: mark a long system prompt or tool list with `cache_control`.

Jobs of one batch usually share their system prompt and tools. Marking the end of that prefix
with `cache_control: {"type": "ephemeral"}` lets the API write it to its cache on the first call
(1.25x the input price) and read it on later ones (0.1x). A request that already carries a
`cache_control` anywhere is left exactly as it is: the user placed their own breakpoints.

A request's cached prefix has a digest (`prefix_digest`): the governor prefers, for calls that
share one, the endpoint that served it before, whose cache holds it.
"""

from __future__ import annotations

import hashlib
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


def _marked(value: Any) -> bool:
    return isinstance(value, Mapping) and "cache_control" in value


def _blocks(content: Any) -> list[Any]:
    return content if isinstance(content, list) else [content]


def cached_prefix(request: Mapping[str, Any]) -> list[Any] | None:
    """The part of `request` its prompt cache holds, in the order the cache covers it (tools,
    system, messages), up to and including the last `cache_control` breakpoint; None without
    one. A top-level `cache_control` (automatic caching) covers the whole prompt."""
    tools = list(request.get("tools") or [])
    system = request.get("system")
    system_blocks = _blocks(system) if system else []
    messages = list(request.get("messages") or [])
    if "cache_control" in request:
        return [tools, system_blocks, messages]
    for m in range(len(messages) - 1, -1, -1):
        message = messages[m]
        content = _blocks(message.get("content")) if isinstance(message, Mapping) else []
        for b in range(len(content) - 1, -1, -1):
            if _marked(content[b]):
                last = {**message, "content": content[: b + 1]}
                return [tools, system_blocks, [*messages[:m], last]]
    for s in range(len(system_blocks) - 1, -1, -1):
        if _marked(system_blocks[s]):
            return [tools, system_blocks[: s + 1]]
    for t in range(len(tools) - 1, -1, -1):
        if _marked(tools[t]):
            return [tools[: t + 1]]
    return None


def prefix_digest(request: Mapping[str, Any]) -> str | None:
    """A short digest of the model and the cached prefix (`cached_prefix`): requests that share
    one share their digest, which routes them to the endpoint whose cache holds it. None when
    the request caches nothing."""
    prefix = cached_prefix(request)
    if prefix is None:
        return None
    text = json.dumps([request.get("model"), prefix], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
