"""Prompt caching: a `cache_control` breakpoint writes its prefix once; later identical prefixes
within the TTL are read. Pure: every method takes `now_s`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from anvil_cli.policy.tokens import estimate_input_tokens

ONE_HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class Breakpoint:
    """One cacheable prefix of a request."""

    key: str
    tokens: int
    ttl_s: float


@dataclass(slots=True)
class CachePlan:
    """How a request's input splits into cache reads, cache writes and uncached tokens."""

    input_tokens: int
    write_tokens: int = 0
    read_tokens: int = 0
    store: list[Breakpoint] = field(default_factory=list)


def _ttl_s(block: Mapping[str, Any], default_ttl_s: float) -> float:
    control = block.get("cache_control")
    return ONE_HOUR_S if isinstance(control, Mapping) and control.get("ttl") == "1h" else default_ttl_s


def _cached(block: Any) -> bool:
    return isinstance(block, Mapping) and bool(block.get("cache_control"))


def _prefixes(body: Mapping[str, Any]) -> list[tuple[dict[str, Any], Mapping[str, Any]]]:
    """(prefix request, block carrying cache_control) in order: tools, system, messages."""
    tools = body.get("tools") or []
    system = body.get("system")
    messages = body.get("messages") or []
    out: list[tuple[dict[str, Any], Mapping[str, Any]]] = []
    out += [({"tools": tools[: i + 1]}, t) for i, t in enumerate(tools) if _cached(t)]
    if isinstance(system, list):
        out += [({"tools": tools, "system": system[: i + 1]}, b) for i, b in enumerate(system) if _cached(b)]
    for m_i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        for b_i, block in enumerate(content):
            if _cached(block):
                upto = [*messages[:m_i], {**message, "content": content[: b_i + 1]}]
                out.append(({"tools": tools, "system": system, "messages": upto}, block))
    if _cached(body):  # top-level automatic caching: the whole prompt
        out.append(({"tools": tools, "system": system, "messages": messages}, body))
    return out


def breakpoints(body: Mapping[str, Any], total_tokens: int, default_ttl_s: float) -> list[Breakpoint]:
    """The request's cache breakpoints, shortest prefix first."""
    model = body.get("model")
    found = []
    for prefix, block in _prefixes(body):
        canonical = json.dumps([model, prefix], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        key = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        tokens = min(total_tokens, estimate_input_tokens(prefix))
        found.append(Breakpoint(key=key, tokens=tokens, ttl_s=_ttl_s(block, default_ttl_s)))
    return found


@dataclass(slots=True)
class PromptCache:
    """Cached prefixes by key, with their expiry time."""

    default_ttl_s: float = 300.0
    expiry_s: dict[str, float] = field(default_factory=dict)

    def _alive(self, key: str, now_s: float) -> bool:
        return self.expiry_s.get(key, -1.0) > now_s

    def plan(self, body: Mapping[str, Any], total_tokens: int, now_s: float) -> CachePlan:
        """Split `total_tokens` for `body` (nothing is stored until `commit`)."""
        points = breakpoints(body, total_tokens, self.default_ttl_s)
        if not points:
            return CachePlan(input_tokens=total_tokens)
        hit = max((i for i, p in enumerate(points) if self._alive(p.key, now_s)), default=-1)
        read = points[hit].tokens if hit >= 0 else 0
        write = max(0, points[-1].tokens - read)
        return CachePlan(
            input_tokens=max(0, total_tokens - read - write),
            write_tokens=write,
            read_tokens=read,
            store=points,
        )

    def commit(self, plan: CachePlan, now_s: float) -> None:
        """Store (or refresh) every breakpoint of a request that was answered."""
        for point in plan.store:
            self.expiry_s[point.key] = now_s + point.ttl_s

    def clear(self) -> None:
        self.expiry_s.clear()
