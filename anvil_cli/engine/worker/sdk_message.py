"""Reading an SDK `Message`: its text and its usage, the same way in every mode."""

from __future__ import annotations

from typing import Any

from anvil_cli.engine.outcomes import Usage


def usage_of(message: Any) -> Usage:
    """The message's `usage` (cache fields included when present)."""
    usage = message.usage
    data: dict[str, Any] = (
        usage.model_dump(exclude_none=True) if hasattr(usage, "model_dump") else dict(usage)
    )
    return Usage.from_json(data)


def tokens_of(message: Any) -> tuple[int, int]:
    """The message's input tokens (uncached, cache writes and reads: all it was sent) and output
    tokens."""
    usage = usage_of(message)
    return usage.input_tokens + usage.cache_write_tokens + usage.cache_read_tokens, usage.output_tokens


def text_of(message: Any) -> str:
    """The message's text blocks, joined."""
    return "".join(getattr(block, "text", "") for block in message.content if block.type == "text")
