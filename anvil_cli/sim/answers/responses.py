"""Building answers: deterministic text and tool calls, the message object and its SSE events."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anvil_cli.policy.tokens import text_tokens
from anvil_cli.sim.answers.caching import CachePlan
from anvil_cli.sim.answers.directives import Directives
from anvil_cli.sim.answers.schema_fill import fill
from anvil_cli.sim.answers.structured import (
    invalid_text,
    requested_schema,
    valid_text,
    wants_invalid,
)
from anvil_cli.sim.digest import messages_digest

WORDS = (
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "while",
    "simulated",
    "tokens",
    "stream",
    "from",
    "a",
    "local",
    "stand-in",
    "for",
    "the",
    "messages",
    "api",
    "so",
    "batches",
    "can",
    "rehearse",
    "against",
    "their",
    "limits",
    "without",
    "spending",
    "money",
    "or",
    "time",
    "on",
    "real",
    "calls",
    "and",
    "every",
    "answer",
    "names",
    "its",
    "request",
)
PREFIX_TOKENS = 5  # roughly what "sim:<16 hex> " costs
TEXT_PIECE_CHARS = 48
JSON_PIECE_CHARS = 32


@dataclass(slots=True)
class Reply:
    """The content of a successful answer."""

    content: list[dict[str, Any]]
    stop_reason: str
    output_tokens: int
    structured: bool = False  # the request asked for a JSON schema
    invalid: bool = False  # made invalid on purpose (`invalid=`, the invalid rate)


def sample_output_tokens(mean: int, spread: float, rng: random.Random) -> int:
    """Output tokens from a lognormal with the given mean and sigma (exactly `mean` when sigma is 0)."""
    if spread <= 0 or mean <= 0:
        return max(1, mean)
    mu = math.log(mean) - spread * spread / 2
    return max(1, round(rng.lognormvariate(mu, spread)))


def answer_text(digest: str, output_tokens: int, rng: random.Random) -> str:
    """`sim:<digest> ` followed by deterministic filler about `output_tokens` long."""
    words = rng.choices(WORDS, k=max(1, output_tokens - PREFIX_TOKENS))
    return f"sim:{digest} " + " ".join(words)


def _has_tool_result(messages: list[Any]) -> bool:
    last = messages[-1] if messages else None
    if not isinstance(last, Mapping) or last.get("role") != "user":
        return False
    content = last.get("content")
    return isinstance(content, list) and any(
        isinstance(b, Mapping) and b.get("type") == "tool_result" for b in content
    )


def tool_to_call(body: Mapping[str, Any], directives: Directives) -> Mapping[str, Any] | None:
    """The tool this answer calls, or None for a text answer."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {}
    if not tools or choice.get("type") == "none" or _has_tool_result(body["messages"]):
        return None
    wanted = directives.tool or (choice.get("name") if choice.get("type") == "tool" else None)
    for tool in tools:
        if wanted is None or tool.get("name") == wanted:
            return tool  # type: ignore[no-any-return]
    return None


def _tool_reply(
    tool: Mapping[str, Any], directives: Directives, max_tokens: int, rng: random.Random
) -> Reply:
    schema = tool.get("input_schema")
    args = fill(schema if isinstance(schema, Mapping) else {}, rng)
    block = {
        "type": "tool_use",
        "id": f"toolu_sim{rng.getrandbits(64):016x}",
        "name": tool["name"],
        "input": args,
    }
    wanted = directives.output_tokens or len(json.dumps(args)) // 4 + 20
    return Reply(content=[block], stop_reason="tool_use", output_tokens=max(1, min(wanted, max_tokens)))


def _said_reply(text: str, directives: Directives, max_tokens: int) -> Reply:
    """A text answer whose words are given: its output tokens follow the text (or
    `output_tokens=`); past `max_tokens` it is cut there, as the API cuts an answer."""
    wanted = directives.output_tokens or max(1, math.ceil(text_tokens(text)))
    stop = "end_turn"
    if wanted > max_tokens:
        text = text[: len(text) * max_tokens // wanted]
        wanted, stop = max_tokens, "max_tokens"
    return Reply(content=[{"type": "text", "text": text}], stop_reason=stop, output_tokens=wanted)


def compose(
    body: Mapping[str, Any],
    directives: Directives,
    mean_tokens: int,
    spread: float,
    rng: random.Random,
    invalid_rate: float = 0.0,
    seed: int = 0,
) -> Reply:
    """The answer to `body`: a tool call when tools are offered and none was answered yet, else
    text: JSON for the requested schema (valid unless asked otherwise: `structured.py`), the
    `say=` text, or deterministic filler."""
    max_tokens = int(body["max_tokens"])
    tool = tool_to_call(body, directives)
    if tool is not None:
        return _tool_reply(tool, directives, max_tokens, rng)
    schema = requested_schema(body)
    invalid = (directives.invalid > 0 or invalid_rate > 0) and wants_invalid(
        body, directives, invalid_rate, seed
    )
    if schema is not None:
        digest = messages_digest(body["messages"])
        text = invalid_text(schema, rng, digest) if invalid else valid_text(schema, rng, directives.score)
        reply = _said_reply(text, directives, max_tokens)
        reply.structured, reply.invalid = True, invalid
        return reply
    if directives.say is not None and not invalid:
        return _said_reply(directives.say, directives, max_tokens)
    wanted = directives.output_tokens or sample_output_tokens(mean_tokens, spread, rng)
    stop = "end_turn"
    if wanted > max_tokens:
        wanted, stop = max_tokens, "max_tokens"
    text = answer_text(messages_digest(body["messages"]), wanted, rng)
    content = [{"type": "text", "text": text}]
    return Reply(content=content, stop_reason=stop, output_tokens=wanted, invalid=invalid)


def usage(plan: CachePlan, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": plan.input_tokens,
        "cache_creation_input_tokens": plan.write_tokens,
        "cache_read_input_tokens": plan.read_tokens,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message(msg_id: str, model: str, reply: Reply, plan: CachePlan) -> dict[str, Any]:
    """The JSON body of a non-streaming answer."""
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": usage(plan, reply.output_tokens),
    }


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _block_events(index: int, block: Mapping[str, Any]) -> list[bytes]:
    if block["type"] == "tool_use":
        start = {**block, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": p}
            for p in ["", *_pieces(json.dumps(block["input"]), JSON_PIECE_CHARS)]
        ]
    else:
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"], TEXT_PIECE_CHARS)]
    opening = {"type": "content_block_start", "index": index, "content_block": start}
    events = [sse("content_block_start", opening)]
    events += [
        sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
        for d in deltas
    ]
    events.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def stream_head(msg: Mapping[str, Any]) -> list[bytes]:
    """`message_start` (empty content, one output token so far) and a ping."""
    start_usage = {**msg["usage"], "output_tokens": 1}
    head = {**msg, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    return [sse("message_start", {"type": "message_start", "message": head}), sse("ping", {"type": "ping"})]


def stream_body(msg: Mapping[str, Any]) -> list[bytes]:
    """Block events, then `message_delta` with the final usage and `message_stop`."""
    events: list[bytes] = []
    for index, block in enumerate(msg["content"]):
        events += _block_events(index, block)
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
        "usage": {k: v for k, v in msg["usage"].items() if k != "service_tier"},
    }
    events.append(sse("message_delta", delta))
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events


def stream_error_event(kind: str = "overloaded_error", text: str = "Overloaded") -> bytes:
    return sse("error", {"type": "error", "error": {"type": kind, "message": text}})
