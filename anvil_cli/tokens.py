"""A local token estimate for requests: used when no `count_tokens` endpoint is at hand.

About four characters a token for English text, plus a small overhead per message and
per tool. It is an estimate and is always labelled as one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

CHARS_PER_TOKEN = 4.0
PER_MESSAGE_OVERHEAD = 4
PER_REQUEST_OVERHEAD = 8


def _text_chars(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if isinstance(content, Mapping):
        if "text" in content and isinstance(content["text"], str):
            return len(content["text"])
        if "content" in content:
            return _text_chars(content["content"])
        if "input" in content:
            return len(json.dumps(content["input"]))
        return 0
    if isinstance(content, Iterable):
        return sum(_text_chars(block) for block in content)
    return 0


def estimate_input_tokens(request: Mapping[str, Any]) -> int:
    """Estimated input tokens of a Messages API request (system, messages, tools)."""
    chars = _text_chars(request.get("system"))
    messages = request.get("messages") or []
    for message in messages:
        chars += _text_chars(message.get("content") if isinstance(message, Mapping) else message)
    tools = request.get("tools")
    if tools:
        chars += len(json.dumps(tools, separators=(",", ":")))
    tokens = chars / CHARS_PER_TOKEN + PER_MESSAGE_OVERHEAD * len(messages) + PER_REQUEST_OVERHEAD
    return max(1, round(tokens))
