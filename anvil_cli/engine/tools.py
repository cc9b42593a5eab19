"""Tools an agent can run: a job's tool definition may name a local command.

    tools:
      - name: lookup_order
        description: Look an order up by id
        input_schema: {type: object, properties: {order_id: {type: string}}, required: [order_id]}
        anvil_command: python tools/lookup_order.py      # Anvil-only; never sent to the API

When Claude calls such a tool, the worker runs the command (in the directory `anvil run` was
started from) with the tool's input as JSON on stdin; its stdout is the tool result, a non-zero
exit or a timeout an error result (`is_error`) carrying stderr. The API key and the control
token are removed from the command's environment. A tool without `anvil_command` is passed
to the API as is, and a call to it ends the job with `stop_reason: tool_use`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from anvil_cli.toolspec import COMMAND_KEY, command_argv, scrubbed_env, split_tools

__all__ = ["COMMAND_KEY", "add_usage", "command_argv", "run_tool", "scrubbed_env", "split_tools"]

MAX_RESULT_CHARS = 100_000


def run_tool(argv: Sequence[str], tool_input: Any, tool_use_id: str, timeout_s: float) -> dict[str, Any]:
    """Run one tool call; returns the `tool_result` block to send back."""
    try:
        done = subprocess.run(
            list(argv),
            input=json.dumps(tool_input),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=scrubbed_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return _result(tool_use_id, f"the tool timed out after {timeout_s:g} s", error=True)
    except OSError as exc:
        return _result(tool_use_id, f"the tool could not be started: {exc}", error=True)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-2000:]
        return _result(tool_use_id, f"exit code {done.returncode}: {detail}", error=True)
    return _result(tool_use_id, done.stdout[:MAX_RESULT_CHARS])


def _result(tool_use_id: str, content: str, *, error: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": content}
    if error:
        block["is_error"] = True
    return block


def add_usage(total: dict[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Token counts of several calls (one job's turns) added up."""
    out = dict(total)
    for key, value in more.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = out.get(key, 0) + value
        elif key not in out:
            out[key] = value
    return out
