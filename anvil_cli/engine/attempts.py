"""A job's attempt log: every API call it made (or its answer from the result cache, or its
Message Batches request), and under each answer the tool calls it asked for. Frozen values; the
journal keeps them as JSON (`to_json`/`from_json`, the same keys and order as ever). The attempt
log is where a job's tool errors are kept: every count of them is derived from it. This module
imports nothing of Anvil's; the engine's other values that cross process pipes pickle as its
`by_fields` says."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, TypeVar

TOOL_OUTPUT_NOTE_CHARS = 200  # of a tool's result kept in the attempt log
TOOL_ERROR_NOTE_CHARS = 500  # of a failed tool call's message kept in the attempt log

_T = TypeVar("_T")


def by_fields(cls: type[_T]) -> type[_T]:
    """Pickle a frozen slots dataclass as its class and its fields in order, rebuilt by its
    `__init__` (the same value, on any pipe or Ray). The conductor unpickles every worker event:
    this is several times cheaper than the `__getstate__`/`__setstate__` pair such a dataclass
    gets, which looks its fields up again for every value. Put it above `@dataclass`."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    many: Callable[[Any], Any] = attrgetter(*names) if names else (lambda _: ())
    get = many if len(names) != 1 else (lambda value: (many(value),))

    def __reduce__(self: _T) -> tuple[type[_T], tuple[Any, ...]]:
        return cls, get(self)

    setattr(cls, "__reduce__", __reduce__)  # noqa: B010 - a method set on a class built by @dataclass
    return cls


@by_fields
@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call an answer asked for: the head of its result, or why it failed (`error`: a
    kind of `runner.TOOL_ERROR_KINDS`, and its `message`)."""

    tool: str
    output: str | None = None
    error: str | None = None
    message: str | None = None

    @classmethod
    def ran(cls, tool: str, output: str) -> ToolCall:
        return cls(tool, output=output[:TOOL_OUTPUT_NOTE_CHARS])

    @classmethod
    def failed(cls, tool: str, kind: str, message: str | None) -> ToolCall:
        return cls(tool, error=kind, message=(message or "")[:TOOL_ERROR_NOTE_CHARS])

    def to_json(self) -> dict[str, Any]:
        if self.error is None:
            return {"tool": self.tool, "output": self.output}
        return {"tool": self.tool, "error": self.error, "message": self.message}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ToolCall:
        return cls(data.get("tool", ""), data.get("output"), data.get("error"), data.get("message"))


@by_fields
@dataclass(frozen=True, slots=True)
class Attempt:
    """One entry of a job's attempt log. `status_code` 200: answered (then `tools` lists the
    tool calls the answer asked for); else failed, with `error_type` and `message`."""

    n: int  # the job's how-manyth call (0: answered from the result cache)
    model: str
    status_code: int | None  # None: no HTTP answer (connection error, timeout)
    latency_s: float | None = None  # request to answer (Message Batches requests are not timed)
    error_type: str | None = None
    message: str | None = None
    host: str | None = None  # where a connection error went
    unreachable: bool = False  # no connection was made (policy/unreachable.py counts these)
    wait_s: float | None = None  # the back-off before the next attempt
    tools: tuple[ToolCall, ...] | None = None
    cache_hit: bool = False  # answered from the result cache: no call
    batch: bool = False  # answered in a Message Batch
    endpoint: str | None = None  # the named endpoint (`endpoints:`) the call went to; None: the only one
    # why the call was made: None the answer itself, "reask" the answer asked again for not
    # matching the output schema, "judge" a judge grading the answer (policy/checks)
    purpose: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code == 200

    def failed_tools(self) -> list[ToolCall]:
        return [call for call in self.tools or () if call.error]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "model": self.model, "status_code": self.status_code}
        if self.error_type is not None:
            out["error_type"] = self.error_type
        if self.message is not None:
            out["message"] = self.message
        if self.cache_hit:
            out["cache_hit"] = True
        if self.latency_s is not None:
            out["latency_s"] = self.latency_s
        if self.batch:
            out["batch"] = True
        if self.host is not None:
            out["host"] = self.host
        if self.unreachable:
            out["unreachable"] = True
        if self.wait_s is not None:
            out["wait_s"] = self.wait_s
        if self.tools is not None:
            out["tools"] = [call.to_json() for call in self.tools]
        if self.endpoint is not None:
            out["endpoint"] = self.endpoint
        if self.purpose is not None:
            out["purpose"] = self.purpose
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        calls = data.get("tools")
        tools = (
            tuple(ToolCall.from_json(c) for c in calls if isinstance(c, dict))
            if isinstance(calls, list)
            else None
        )
        return cls(
            n=data.get("n", 0),
            model=data.get("model", ""),
            status_code=data.get("status_code"),
            latency_s=data.get("latency_s"),
            error_type=data.get("error_type"),
            message=data.get("message"),
            host=data.get("host"),
            unreachable=bool(data.get("unreachable")),
            wait_s=data.get("wait_s"),
            tools=tools,
            endpoint=data.get("endpoint") if isinstance(data.get("endpoint"), str) else None,
            cache_hit=bool(data.get("cache_hit")),
            batch=bool(data.get("batch")),
            purpose=data.get("purpose") if isinstance(data.get("purpose"), str) else None,
        )


def log_from_json(data: Any) -> tuple[Attempt, ...]:
    """An attempt log from the journal's JSON (anything not a list of entries reads as empty)."""
    return tuple(Attempt.from_json(e) for e in data if isinstance(e, dict)) if isinstance(data, list) else ()


def failed_tool_calls(log: Iterable[Attempt]) -> Iterator[ToolCall]:
    """The failed tool calls of an attempt log, in order."""
    for entry in log:
        yield from entry.failed_tools()


def tool_errors_of(attempt_log: Any) -> tuple[int, dict[str, Any] | None]:
    """(how many tool calls failed, the last failure as {tool, kind, message}) of an attempt log
    as the journal keeps it (its JSON)."""
    failed = list(failed_tool_calls(log_from_json(attempt_log)))
    if not failed:
        return 0, None
    last = failed[-1]
    return len(failed), {"tool": last.tool, "kind": last.error, "message": last.message}
