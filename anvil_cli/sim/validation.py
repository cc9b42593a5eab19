"""Checks of request bodies; each returns the first problem as a message, or None."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anvil_cli.policy.checks.schema import schema_problem

REJECTED_SAMPLING = ("temperature", "top_p", "top_k")
ROLES = ("user", "assistant")
TOOL_CHOICES = ("auto", "any", "none", "tool")
EFFORTS = ("low", "medium", "high", "xhigh", "max")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_blocks(where: str, content: Any) -> str | None:
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return f"{where}: Input should be a valid string or list of content blocks"
    for i, block in enumerate(content):
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            return f"{where}.{i}: each content block must be an object with a `type`"
    return None


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            return f"messages.{i}: Input should be an object"
        if message.get("role") not in ROLES:
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if "content" not in message:
            return f"messages.{i}.content: Field required"
        problem = _check_blocks(f"messages.{i}.content", message["content"])
        if problem:
            return problem
    return None


def _check_tools(body: Mapping[str, Any]) -> str | None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a valid list"
        for i, tool in enumerate(tools):
            if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
                return f"tools.{i}.name: Field required"
    choice = body.get("tool_choice")
    if choice is not None and (not isinstance(choice, Mapping) or choice.get("type") not in TOOL_CHOICES):
        return "tool_choice: Input should be an object with type auto, any, none or tool"
    return None


def _check_format(fmt: Any) -> str | None:
    """`output_config.format`: `{"type": "json_schema", "schema": {...}}` (or null)."""
    if fmt is None:
        return None
    if not isinstance(fmt, Mapping):
        return "output_config.format: Input should be an object"
    if fmt.get("type") != "json_schema":
        return f"output_config.format.type: Input should be 'json_schema', got {fmt.get('type')!r}"
    if "schema" not in fmt:
        return "output_config.format.schema: Field required"
    if not isinstance(fmt["schema"], Mapping):
        return "output_config.format.schema: Input should be an object (a JSON Schema)"
    problem = schema_problem(fmt["schema"])
    return f"output_config.format.schema: {problem}" if problem else None


def _check_output_config(body: Mapping[str, Any]) -> str | None:
    config = body.get("output_config")
    if config is None:
        return None
    if not isinstance(config, Mapping):
        return "output_config: Input should be an object"
    unknown = sorted(set(config) - {"format", "effort"})
    if unknown:
        return f"output_config.{unknown[0]}: Extra inputs are not permitted"
    effort = config.get("effort")
    if effort is not None and effort not in EFFORTS:
        return f"output_config.effort: Input should be one of {', '.join(EFFORTS)}"
    return _check_format(config.get("format"))


def _check_optional(body: Mapping[str, Any]) -> str | None:
    for key in REJECTED_SAMPLING:
        if key in body:
            return f"{key}: Extra inputs are not permitted on this API version"
    if "system" in body and body["system"] is not None:
        problem = _check_blocks("system", body["system"])
        if problem:
            return problem
    if "stream" in body and not isinstance(body["stream"], bool):
        return "stream: Input should be a valid boolean"
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        return "stop_sequences: Input should be a valid list of strings"
    return _check_tools(body) or _check_output_config(body)


def check_count_tokens(body: Any) -> str | None:
    """Problem with a count_tokens body (no `max_tokens` needed)."""
    if not isinstance(body, Mapping):
        return "Request body must be a JSON object"
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "model: Field required" if model is None else "model: Input should be a valid string"
    return _check_messages(body.get("messages")) or _check_optional(body)


def check_message(body: Any) -> str | None:
    """Problem with a Messages API create body."""
    problem = check_count_tokens(body)
    if problem:
        return problem
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        return "max_tokens: Field required"
    if not _is_int(max_tokens):
        return "max_tokens: Input should be a valid integer"
    if max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    return None
