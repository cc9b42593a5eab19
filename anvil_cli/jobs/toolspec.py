"""What a tool definition may say to Anvil (`anvil_command`, and `anvil_sandbox` to widen its
sandbox) and how a request is cleaned of them before it reaches the API. Pure: the batch
validator, the planner and the engine share it; running a command is `engine.tools`."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
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


SANDBOX_KEY = "anvil_sandbox"  # {network: bool, read: [paths], write: [paths]}
ANVIL_KEYS = (COMMAND_KEY, SANDBOX_KEY)  # what a tool definition says to Anvil, never to the API


def split_tools(request: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The request as the API must see it (no Anvil keys), and the runnable tools by name."""
    tools = request.get("tools")
    if not tools:
        return dict(request), {}
    runnable: dict[str, list[str]] = {}
    cleaned: list[Any] = []
    for tool in tools:
        if isinstance(tool, dict) and any(k in tool for k in ANVIL_KEYS):
            argv = command_argv(tool.get(COMMAND_KEY))
            if argv is not None:
                runnable[str(tool.get("name"))] = argv
            tool = {k: v for k, v in tool.items() if k not in ANVIL_KEYS}
        cleaned.append(tool)
    return {**request, "tools": cleaned}, runnable


@dataclass(frozen=True)
class ToolSandbox:
    """What one tool's `anvil_sandbox` adds to the run's sandbox settings."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    network: bool = False


SANDBOX_FIELDS = ("read", "write", "network")


def sandbox_problems(value: Any) -> list[tuple[str, str]]:
    """(sub-field, message) for each thing wrong with an `anvil_sandbox` value."""
    if not isinstance(value, dict):
        return [("", "expected a mapping: read, write (lists of absolute paths), network (true/false)")]
    unknown = [k for k in value if k not in SANDBOX_FIELDS]
    problems = [(f".{k}", f"unknown key {k!r} (allowed: {', '.join(SANDBOX_FIELDS)})") for k in unknown]
    if "network" in value and not isinstance(value["network"], bool):
        problems.append((".network", "expected true or false"))
    for key in ("read", "write"):
        paths = value.get(key, [])
        if not isinstance(paths, list):
            problems.append((f".{key}", "expected a list of absolute paths"))
            continue
        for i, path in enumerate(paths):
            if not isinstance(path, str) or "\x00" in path or not os.path.isabs(os.path.expanduser(path)):
                problems.append((f".{key}[{i}]", "expected an absolute path (or one starting with ~)"))
    return problems


def tool_sandboxes(request: Mapping[str, Any]) -> dict[str, ToolSandbox]:
    """Each runnable tool's valid `anvil_sandbox`, by name (validation refused the others)."""
    found: dict[str, ToolSandbox] = {}
    for tool in request.get("tools") or []:
        value = tool.get(SANDBOX_KEY) if isinstance(tool, dict) else None
        if value is None or sandbox_problems(value):
            continue
        found[str(tool.get("name"))] = ToolSandbox(
            tuple(os.path.expanduser(p) for p in value.get("read", [])),
            tuple(os.path.expanduser(p) for p in value.get("write", [])),
            bool(value.get("network", False)),
        )
    return found
