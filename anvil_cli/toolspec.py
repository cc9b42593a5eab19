"""What a tool definition may say to Anvil (`anvil_command`) and how a request is cleaned of
it before it reaches the API. Pure: the batch validator, the planner and the engine share it;
running a command is `engine.tools`."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from typing import Any

COMMAND_KEY = "anvil_command"
SECRET_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_CUSTOM_HEADERS", "ANVIL_API_TOKEN")


def scrubbed_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`environ` (default: this process's environment) without the API key and control token:
    the environment of every command Anvil runs (tools, `alerts.command`)."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k not in SECRET_ENV}


def command_argv(value: Any) -> list[str] | None:
    """A command as an argv list, from a string (shell-split) or a list of strings; None if bad."""
    if isinstance(value, str) and value.strip():
        try:
            return shlex.split(value)
        except ValueError:
            return None
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    return None


def split_tools(request: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The request as the API must see it (no Anvil keys), and the runnable tools by name."""
    tools = request.get("tools")
    if not tools:
        return dict(request), {}
    runnable: dict[str, list[str]] = {}
    cleaned: list[Any] = []
    for tool in tools:
        if isinstance(tool, dict) and COMMAND_KEY in tool:
            argv = command_argv(tool[COMMAND_KEY])
            if argv is not None:
                runnable[str(tool.get("name"))] = argv
            tool = {k: v for k, v in tool.items() if k != COMMAND_KEY}
        cleaned.append(tool)
    return {**request, "tools": cleaned}, runnable
