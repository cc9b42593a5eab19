"""A local token estimate for requests: used when no `count_tokens` endpoint is at hand.

It also sizes the budget's worst-case reservation before a call, so it leans high:

* ASCII text: about four characters a token (English prose, code, JSON).
* Non-ASCII characters (accents, CJK, emoji, ...): one token each.
* An image block (`{"type": "image", ...}`): 1,600 tokens, about the most one image costs
  once the API has scaled it to its maximum size.
* A document block: a base64 source counts `len(data) / 3` tokens (conservative for PDFs); a
  text source counts its text; a content source its blocks; any other source (a URL, a file
  id) 3,000 tokens.
* Tool inputs and tool definitions: their compact JSON, as text.
* A small overhead per message and per request.

It is an estimate and is always labelled as one. Plain ASCII text stays on a fast path (one
`str.isascii()` check, constant time in CPython), since this runs once per job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

CHARS_PER_TOKEN = 4.0
PER_MESSAGE_OVERHEAD = 4
PER_REQUEST_OVERHEAD = 8
IMAGE_TOKENS = 1_600
DOCUMENT_BASE64_CHARS_PER_TOKEN = 3.0
DOCUMENT_OTHER_SOURCE_TOKENS = 3_000


def text_tokens(text: str) -> float:
    """ASCII at `CHARS_PER_TOKEN` characters a token, every other character one token."""
    if text.isascii():
        return len(text) / CHARS_PER_TOKEN
    ascii_chars = len(text.encode("ascii", "ignore"))
    return ascii_chars / CHARS_PER_TOKEN + (len(text) - ascii_chars)


def _json_tokens(value: Any) -> float:
    return text_tokens(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _document_tokens(block: Mapping[str, Any]) -> float:
    source = block.get("source")
    tokens = _tokens(block.get("title")) + _tokens(block.get("context"))
    if not isinstance(source, Mapping):
        return tokens + DOCUMENT_OTHER_SOURCE_TOKENS
    kind, data = source.get("type"), source.get("data")
    if kind == "base64" and isinstance(data, str):
        return tokens + len(data) / DOCUMENT_BASE64_CHARS_PER_TOKEN
    if kind == "text" and isinstance(data, str):
        return tokens + text_tokens(data)
    if kind == "content":
        return tokens + _tokens(source.get("content"))
    return tokens + DOCUMENT_OTHER_SOURCE_TOKENS


def _tokens(content: Any) -> float:
    if content is None:
        return 0.0
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, Mapping):
        kind = content.get("type")
        if kind == "image":
            return IMAGE_TOKENS
        if kind == "document":
            return _document_tokens(content)
        if "text" in content and isinstance(content["text"], str):
            return text_tokens(content["text"])
        if "content" in content:
            return _tokens(content["content"])
        if "input" in content:
            return _json_tokens(content["input"])
        return 0.0
    if isinstance(content, Iterable):
        return sum(_tokens(block) for block in content)
    return 0.0


def estimate_input_tokens(request: Mapping[str, Any]) -> int:
    """Estimated input tokens of a Messages API request (system, messages, tools)."""
    tokens = _tokens(request.get("system"))
    messages = request.get("messages") or []
    for message in messages:
        tokens += _tokens(message.get("content") if isinstance(message, Mapping) else message)
    tools = request.get("tools")
    if tools:
        tokens += _json_tokens(tools)
    tokens += PER_MESSAGE_OVERHEAD * len(messages) + PER_REQUEST_OVERHEAD
    return max(1, round(tokens))
