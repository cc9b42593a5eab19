"""Digests that tie a simulated answer to the request that asked for it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def messages_digest(messages: list[Any]) -> str:
    """First 16 hex digits of the sha256 of the canonical JSON of `messages`."""
    return hashlib.sha256(_canonical(messages)).hexdigest()[:16]


def request_digest(body: Mapping[str, Any]) -> str:
    """Identity of a request for attempt counters and duplicate detection.

    Covers model, system, messages, max_tokens, tools and (when given) output_config: two
    requests with the same digest would be billed for the same answer twice.
    """
    key = [body.get(k) for k in ("model", "system", "messages", "max_tokens", "tools")]
    if body.get("output_config") is not None:
        key.append(body["output_config"])
    return hashlib.sha256(_canonical(key)).hexdigest()[:32]
