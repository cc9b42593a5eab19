"""Tools an agent can run: a job's tool definition may name a local command.

    tools:
      - name: lookup_order
        description: Look an order up by id
        input_schema: {type: object, properties: {order_id: {type: string}}, required: [order_id]}
        anvil_command: python tools/lookup_order.py      # Anvil-only; never sent to the API

When Claude calls such a tool, the worker runs the command (`engine/tool_runner.py`: its own
process group, killed with everything it started when the call ends; bounded output and
resources) in the job's own directory (`run.tool_workdir`), with the tool's input as JSON on
stdin; its stdout is the tool result, a non-zero exit or a timeout an error result
(`is_error`) carrying stderr. The API key and the control token are removed from the command's
environment. A tool without `anvil_command` is passed to the API as is, and a call to it ends
the job with `stop_reason: tool_use`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from anvil_cli.batch.job import Job
from anvil_cli.config import RunSettings
from anvil_cli.engine.sandbox import Sandboxing, SandboxPolicy, WorkRoot, work_prefix
from anvil_cli.engine.tool_runner import ToolLimits, ToolProcesses
from anvil_cli.toolspec import (
    COMMAND_KEY,
    ToolSandbox,
    command_argv,
    scrubbed_env,
    split_tools,
    tool_sandboxes,
)

__all__ = [
    "COMMAND_KEY",
    "ToolContext",
    "add_usage",
    "command_argv",
    "scrubbed_env",
    "split_tools",
]
MB = 1024 * 1024


def tool_limits(run: RunSettings) -> ToolLimits:
    """The per-call limits of `run:` in the settings."""
    return ToolLimits(
        max_output_bytes=run.tool_max_output_kb * 1024,
        cpu_s=run.tool_cpu_s,
        memory_bytes=None if run.tool_memory_mb is None else run.tool_memory_mb * MB,
        file_size_bytes=None if run.tool_file_size_mb is None else run.tool_file_size_mb * MB,
        max_processes=run.tool_max_processes,  # applied inside a sandbox only
        workdir_quota_bytes=None if run.tool_workdir_quota_mb is None else run.tool_workdir_quota_mb * MB,
    )


def sandboxing(run: RunSettings, state_dir: Path) -> Sandboxing | None:
    """How tool calls are sandboxed under `run:` (None: `tool_sandbox: none`, unsandboxed)."""
    if run.tool_sandbox == "none":
        return None
    quota = run.tool_workdir_quota_mb
    policy = SandboxPolicy(
        read_paths=tuple(run.tool_read_paths),
        write_paths=tuple(run.tool_write_paths),
        network=run.tool_network,
        tmp_bytes=None if quota is None else quota * MB,
        hidden=(state_dir,),
        launch_dir=Path.cwd(),
    )
    return Sandboxing(run.tool_bwrap, policy)


@dataclass
class ToolContext:
    """How one worker runs tool calls: limits, environment, the groups running, where, and in
    what sandbox (`engine/sandbox.py`). Job directories live in a private temporary directory
    of this worker's (`sandbox.WorkRoot`), never under the state dir, and go when it ends."""

    timeout_s: float = 60.0
    limits: ToolLimits = field(default_factory=ToolLimits)
    env: Mapping[str, str] = field(default_factory=scrubbed_env)
    processes: ToolProcesses = field(default_factory=ToolProcesses)
    workdir_root: WorkRoot | None = None  # None: tools run in the current directory
    sandboxing: Sandboxing | None = None  # None: tools run unsandboxed

    @classmethod
    def for_run(cls, run: RunSettings, state_dir: Path, run_id: str, processes: ToolProcesses) -> ToolContext:
        root = WorkRoot(work_prefix(run_id)) if run.tool_workdir == "job" else None
        limits = tool_limits(run)
        return cls(run.tool_timeout_s, limits, scrubbed_env(), processes, root, sandboxing(run, state_dir))

    def workdir_for(self, job: Job) -> Path | None:
        """A job's own directory (created 0700 on first use, kept until `close`), or None."""
        if self.workdir_root is None:
            return None
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in job.id)[:80]
        path = self.workdir_root.get() / f"{job.seq:06d}-{safe}"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    async def refusal(self) -> str | None:
        """Why this worker cannot run tool commands (no sandbox can start here), or None."""
        if self.sandboxing is None:
            return None
        found = await self.sandboxing.availability()
        return None if found.bwrap is not None else found.refusal()

    def limits_for(self, job: Job, tool: str) -> ToolLimits:
        """The limits of one call of `tool` in `job`: the run's, in its sandbox (after `refusal`)."""
        if self.sandboxing is None:
            return self.limits
        own = tool_sandboxes(job.params).get(tool, ToolSandbox())
        return replace(self.limits, sandbox=self.sandboxing.sandbox(own.read, own.write, own.network))

    def close(self) -> None:
        """Remove this worker's job directories (at the end of its run)."""
        if self.workdir_root is not None:
            self.workdir_root.close()


def add_usage(total: dict[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Token counts of several calls (one job's turns) added up."""
    out = dict(total)
    for key, value in more.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = out.get(key, 0) + value
        elif key not in out:
            out[key] = value
    return out
