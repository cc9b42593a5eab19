"""Tools an agent can run: a job's tool definition may name a local command.

    tools:
      - name: lookup_order
        description: Look an order up by id
        input_schema: {type: object, properties: {order_id: {type: string}}, required: [order_id]}
        anvil_command: python tools/lookup_order.py      # Anvil-only; never sent to the API

When Claude calls such a tool, the worker runs the command (`engine/worker/tools/runner.py`: its own
process group, killed with everything it started when the call ends; bounded output and
resources) in the job's own directory (`run.tool_workdir`), with the tool's input as JSON on
stdin; its stdout is the tool result, a non-zero exit or a timeout an error result
(`is_error`) carrying stderr. The API key and the control token are removed from the command's
environment. A tool without `anvil_command` is passed to the API as is, and a call to it ends
the job with `stop_reason: tool_use`.

Relative paths in a command mean what they mean in the directory `anvil run` was started in:
they are made absolute there when the batch is read (`resolve_command`), before the journal
keeps the job, so the command still runs in the job's own directory and a resume from any
directory runs the same command.

Every tool call is listed in the job's attempt log, under the entry of the answer that asked
for it (`engine.attempts.ToolCall`); a failed one (could not start, non-zero exit, killed, timed out,
output cut) is a tool error: counted in the result (`tool_errors`, `tool_error`), the run's
summary, the snapshot and `anvil status` (all derived from the attempt log).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from anvil_cli.config.settings import RunSettings
from anvil_cli.engine.worker.tools.runner import ToolLimits, ToolProcesses
from anvil_cli.engine.worker.tools.sandbox import Sandboxing, SandboxPolicy, WorkRoot, work_prefix
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.toolspec import (
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
    "command_argv",
    "resolve_command",
    "resolve_job_commands",
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
    what sandbox (`engine/worker/tools/sandbox.py`). Job directories live in a private temporary directory
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


def resolve_command(argv: Sequence[str], launch_dir: Path) -> list[str]:
    """A command with its relative paths made absolute against `launch_dir` (where `anvil run`
    was started), so it means what it meant there when it runs in the job's own directory. An
    element is rewritten when it is relative, does not start with `-`, and names a file or
    directory that exists under `launch_dir`; the program only if it also holds a `/` (a bare
    name is looked up on PATH, as a shell does). Everything else passes unchanged."""
    out = []
    for i, arg in enumerate(argv):
        path = os.path.join(launch_dir, arg)
        path_like = arg and not arg.startswith("-") and not os.path.isabs(arg) and (i or "/" in arg)
        # os.path.exists, not Path.exists: an argument that is code or text (too long a name) is False
        if path_like and os.path.exists(path):
            arg = path
        out.append(arg)
    return out


def resolve_job_commands(jobs: Iterable[Job], launch_dir: Path) -> Iterator[Job]:
    """Jobs whose tools' `anvil_command` went through `resolve_command`, as the journal keeps
    them: a resume, from whatever directory, runs the same commands. Other jobs pass as they are."""
    resolved: dict[tuple[str, ...], list[str]] = {}  # the same tools recur in every job of a batch
    for job in jobs:
        tools = job.params.get("tools")
        if not isinstance(tools, list) or not any(isinstance(t, dict) and COMMAND_KEY in t for t in tools):
            yield job
            continue
        out: list[Any] = []
        for tool in tools:
            argv = command_argv(tool.get(COMMAND_KEY)) if isinstance(tool, dict) else None
            if argv is not None:
                key = tuple(argv)
                if key not in resolved:
                    resolved[key] = resolve_command(argv, launch_dir)
                tool = {**tool, COMMAND_KEY: resolved[key]}
            out.append(tool)
        yield replace(job, params={**job.params, "tools": out})
