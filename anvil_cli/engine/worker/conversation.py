"""One conversation an agent holds with a model on a job's behalf (`Conversation`): the job's
answer (its tool turns and re-asks included), or a judge grading that answer. Every
conversation of one job books its calls in the job's one `JobCalls`: how many calls, what they
cost, the attempt log, whichever conversation made them (a job's judges may run at once)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.outcomes import Usage
from anvil_cli.engine.worker.sdk_message import usage_of
from anvil_cli.jobs.job import Job


@dataclass(slots=True)
class JobCalls:
    """Every call of one job, in every conversation it holds."""

    attempts: int = 0  # calls made (the next one's `Attempt.n` is this plus one)
    cost_usd: float = 0.0  # what the answered ones cost
    log: list[Attempt] = field(default_factory=list)


@dataclass(slots=True)
class Conversation:
    """Where one conversation stands: the model and request of its next call, what the governor
    is told of it, and the job's `calls` it books its calls in."""

    job: Job
    model: str
    request: dict[str, Any]
    est_input: int
    affinity: str | None = None  # the digest of the cached prompt prefix (CallAsk.affinity)
    endpoint: str | None = None  # the named endpoint of the last call (None: the run's only one)
    avoid: str | None = None  # the endpoint the last call failed on, if it may be down (CallAsk.avoid)
    overloaded: int = 0  # consecutive overloads (529s): after routing.fallback_after_529, a fallback
    tools: dict[str, list[str]] = field(default_factory=dict)  # runnable tools: name -> argv
    usage: Usage | None = None  # of every turn so far
    purpose: str | None = None  # of its calls (`Attempt.purpose`): None the answer, "reask", "judge"
    n: int = 0  # its current call's number among the job's calls (`Attempt.n`)
    entry: int = -1  # where its last call is in `calls.log` (-1: none yet)
    calls: JobCalls = field(default_factory=JobCalls)
    last: tuple[Any, Usage] | None = None  # its last answer, and that answer's usage

    def usage_of(self, message: Any) -> Usage:
        """The usage of `message`, an answer of this conversation's (read once per answer)."""
        if self.last is not None and self.last[0] is message:
            return self.last[1]
        usage = usage_of(message)
        self.last = (message, usage)
        return usage

    @property
    def max_tokens(self) -> int:
        """The output tokens its calls may take (a judge's are not the job's)."""
        return int(self.request.get("max_tokens") or self.job.max_tokens)

    def next_call(self) -> int:
        """Number a new call of this conversation among the job's."""
        self.calls.attempts += 1
        self.n = self.calls.attempts
        return self.n

    def book(self, entry: Attempt) -> None:
        """Log this conversation's call (its purpose on it) in the job's attempt log."""
        self.calls.log.append(replace(entry, purpose=self.purpose))
        self.entry = len(self.calls.log) - 1

    def amend(self, **changes: Any) -> None:
        """Change this conversation's last logged call (its tool calls, its back-off)."""
        if self.entry >= 0:
            self.calls.log[self.entry] = replace(self.calls.log[self.entry], **changes)

    def add_usage(self, usage: Usage) -> Usage:
        self.usage = usage if self.usage is None else self.usage + usage
        return self.usage
