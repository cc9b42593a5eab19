"""A job: one conversation with Claude, as read from a batch file."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Priority(IntEnum):
    """Dispatch order: lower value runs first."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @classmethod
    def parse(cls, name: str) -> Priority:
        return cls[name.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


COMPLEXITIES = ("simple", "moderate", "complex")


@dataclass(frozen=True, slots=True)
class Job:
    """One job ready to run. `params` holds any further Messages API parameters
    (tools, tool_choice, stop_sequences, metadata, ...) passed through unchanged."""

    id: str
    seq: int  # position in the batch, 0-based: output order and FIFO tie-break
    messages: list[dict[str, Any]]
    model: str  # a model id, or "auto"
    max_tokens: int
    system: str | list[dict[str, Any]] | None = None
    priority: Priority = Priority.NORMAL
    complexity: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    line: int | None = None  # source line in the batch file, for error messages
    # what the answer must be (policy/checks): a JSON Schema, and checks in their normalised form
    output_schema: dict[str, Any] | None = None
    checks: tuple[dict[str, Any], ...] = ()
    variant: str | None = None  # the `variants:` entry this job runs under (its id ends "@<variant>")

    @property
    def base_id(self) -> str:
        """The id the batch gave the job, before its variant was added (`anvil compare` matches
        jobs by it)."""
        suffix = f"@{self.variant}"
        return self.id[: -len(suffix)] if self.variant and self.id.endswith(suffix) else self.id

    def request(self, model: str | None = None) -> dict[str, Any]:
        """Keyword arguments for `client.messages.create`."""
        req: dict[str, Any] = {
            "model": model or self.model,
            "max_tokens": self.max_tokens,
            "messages": self.messages,
        }
        if self.system is not None:
            req["system"] = self.system
        req.update(self.params)
        return req

    def to_record(self) -> dict[str, Any]:
        """A JSON-able dict that `from_record` turns back into the same job."""
        rec: dict[str, Any] = {
            "id": self.id,
            "seq": self.seq,
            "messages": self.messages,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": self.system,
            "priority": int(self.priority),
            "complexity": self.complexity,
            "metadata": self.metadata,
            "params": self.params,
            "line": self.line,
        }
        if self.output_schema is not None:  # absent unless asked, so older journals read alike
            rec["output_schema"] = self.output_schema
        if self.checks:
            rec["checks"] = list(self.checks)
        if self.variant is not None:
            rec["variant"] = self.variant
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Job:
        return cls(
            id=rec["id"],
            seq=rec["seq"],
            messages=rec["messages"],
            model=rec["model"],
            max_tokens=rec["max_tokens"],
            system=rec.get("system"),
            priority=Priority(rec.get("priority", Priority.NORMAL)),
            complexity=rec.get("complexity"),
            metadata=rec.get("metadata") or {},
            params=rec.get("params") or {},
            line=rec.get("line"),
            output_schema=rec.get("output_schema"),
            checks=tuple(rec.get("checks") or ()),
            variant=rec.get("variant"),
        )
