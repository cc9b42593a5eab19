"""Run one tool call inside the worker's event loop, bounded in time, output and resources.

The call's command is a subprocess in its own process group, started through a shim that sets
its resource limits before exec (`limits.py`), fed its input as JSON on stdin and drained of
its output, its group killed when the call ends whichever way (`processes.py`); what it left
becomes the `tool_result` the model gets, with why it failed, if it did (`outcome.py`). Time
spent draining is bounded by the timeout.

This module is the tool runner's interface: `run_tool_async` and what its callers pass to it or
get back (`ToolLimits`, `ToolProcesses`, `ToolOutcome`), and `kill_group` for the conductor.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from anvil_cli.engine.worker.tools.limits import ToolLimits
from anvil_cli.engine.worker.tools.outcome import NOT_STARTED, TIMEOUT, ToolOutcome, failed, judge
from anvil_cli.engine.worker.tools.processes import ToolProcesses, kill_group, spawn

__all__ = ["ToolLimits", "ToolOutcome", "ToolProcesses", "kill_group", "run_tool_async"]


async def run_tool_async(
    argv: Sequence[str],
    tool_input: Any,
    tool_use_id: str,
    *,
    timeout_s: float,
    limits: ToolLimits,
    cwd: Path | None,
    env: Mapping[str, str],
    processes: ToolProcesses,
) -> ToolOutcome:
    """Run one tool call: `tool_input` as JSON on stdin, stdout as the result. The command gets
    exactly `env` (pass it scrubbed: `toolspec.scrubbed_env`). A failure to start, a non-zero
    exit and a timeout are error results, and cut output a (non-error) result, each with its
    `error_kind`; cancellation kills the command's group, waits for it to exit and propagates."""
    data = json.dumps(tool_input).encode()
    try:
        call = await spawn(argv, limits, cwd, env)
    except (OSError, ValueError) as exc:  # bad cwd, NUL in an argument, fork failure
        return failed(tool_use_id, NOT_STARTED, f"the tool could not be started: {exc}")
    processes.add(call.pgid)
    try:
        async with asyncio.timeout(timeout_s):
            done = await call.communicate(data, limits)
    except TimeoutError:
        return failed(tool_use_id, TIMEOUT, f"the tool timed out after {timeout_s:g} s")
    finally:
        kill_group(call.pgid)
        processes.remove(call.pgid)
        await call.reap()
    return judge(tool_use_id, done)
