"""What a tool call left and what the model is told of it: the captured output, and the
`tool_result` block with, when the call failed, why (`ToolOutcome.error_kind`).

Output policy: stdout keeps its first `max_output_bytes`, stderr its last `max_stderr_bytes`
(the end of an error is what explains it); the rest is read and thrown away (`Capture`), so
the command is never blocked on a full pipe and finishes as it would have, and the result says
how much was cut. Memory stays at the bound plus a few 64 KiB buffers whatever it writes.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

from anvil_cli.engine.attempts import ToolCall

DETAIL_CHARS = 2000  # of stderr (or stdout) quoted in an error result

# Why a tool call failed (`ToolOutcome.error_kind`): it could not be started (not found, not
# executable), it exited non-zero, a signal (a limit, a kill) ended it, it ran out of time, or its
# output was longer than `max_output_bytes` (the model gets the head, but not all it asked for).
NOT_STARTED, EXIT, KILLED, TIMEOUT, OUTPUT_CUT = "not_started", "exit", "killed", "timeout", "output_cut"
TOOL_ERROR_KINDS = (NOT_STARTED, EXIT, KILLED, TIMEOUT, OUTPUT_CUT)


class Capture:
    """A stream's bytes kept up to `limit` (its head, or its tail), and how many there were."""

    def __init__(self, limit: int, *, keep_tail: bool = False) -> None:
        self.limit, self.keep_tail = limit, keep_tail
        self.kept = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.keep_tail:
            self.kept += chunk
            del self.kept[: max(0, len(self.kept) - self.limit)]
        elif len(self.kept) < self.limit:
            self.kept += chunk[: self.limit - len(self.kept)]

    @property
    def cut(self) -> bool:
        return self.total > len(self.kept)

    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Finished:
    """What a command that ran to its end left: exit code, output, a failed exec's reason."""

    returncode: int
    stdout: Capture
    stderr: Capture
    start_error: str | None = None


@dataclass(frozen=True)
class ToolOutcome:
    """One tool call's `tool_result` block (what the model gets), and why it failed, if it did."""

    block: dict[str, Any]
    error_kind: str | None = None  # one of TOOL_ERROR_KINDS
    error_message: str | None = None  # what went wrong, as the model was told it

    def as_call(self, name: str) -> ToolCall:
        """The call as the attempt log lists it under the answer that asked for it."""
        if self.error_kind is None:
            return ToolCall.ran(name, str(self.block["content"]))
        return ToolCall.failed(name, self.error_kind, self.error_message)


def tool_result(tool_use_id: str, content: str, *, error: bool = False) -> dict[str, Any]:
    """A `tool_result` content block."""
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": content}
    if error:
        block["is_error"] = True
    return block


def failed(tool_use_id: str, kind: str, message: str) -> ToolOutcome:
    """An error result of `kind` (one of TOOL_ERROR_KINDS), `message` as the model reads it."""
    return ToolOutcome(tool_result(tool_use_id, message, error=True), kind, message)


def judge(tool_use_id: str, done: Finished) -> ToolOutcome:
    """The outcome of a command that ran to its end."""
    if done.start_error is not None:
        return failed(tool_use_id, NOT_STARTED, f"the tool could not be started: {done.start_error}")
    if done.returncode != 0:
        detail = (done.stderr.text().strip() or done.stdout.text().strip())[-DETAIL_CHARS:]
        code = f"exit code {done.returncode}{_signal_name(done.returncode)}"
        return failed(tool_use_id, KILLED if done.returncode < 0 else EXIT, f"{code}: {detail}")
    content = done.stdout.text()
    if done.stdout.cut:
        kept, total = len(done.stdout.kept), done.stdout.total
        cut = f"output cut: the tool wrote {total} bytes, the first {kept} are shown"
        return ToolOutcome(tool_result(tool_use_id, f"{content}\n[{cut}]"), OUTPUT_CUT, cut)
    return ToolOutcome(tool_result(tool_use_id, content))


def _signal_name(returncode: int) -> str:
    try:
        return f" ({signal.Signals(-returncode).name})" if returncode < 0 else ""
    except ValueError:
        return ""
