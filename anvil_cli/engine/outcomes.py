"""Record types shared by the engine and its views: what a job's outcome is, whatever produced
it (a worker, Message Batches, the result cache) and whoever reads it (journal, metrics, cache).
Frozen values that pickle (they cross process pipes and Ray); the journal, the results files and
the result cache keep them as JSON (`to_json`/`from_json`, the same keys and order as ever).
The attempt log's entries are `engine.attempts`, the checks' `policy.checks.record`; this module
imports nothing else of Anvil's."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from anvil_cli.engine.attempts import Attempt, by_fields
from anvil_cli.policy.checks.record import CheckRecord

# The API's token counts, by the name each has in `Usage`
_COUNTS: dict[str, str] = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_creation_input_tokens": "cache_write_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@by_fields
@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call, or of a job's calls added up (the API's `usage`). The API's
    other usage fields (`cache_creation`'s split, `service_tier`, ...) are kept as it sent them,
    and so is the order of its keys, so the JSON reads back as it came."""

    input_tokens: int = 0  # uncached input
    output_tokens: int = 0
    cache_write_tokens: int = 0  # the API's cache_creation_input_tokens
    cache_read_tokens: int = 0  # the API's cache_read_input_tokens
    api_fields: tuple[tuple[str, Any], ...] = ()  # the API's other fields, as sent
    keys: tuple[str, ...] = field(default=(), compare=False, repr=False)  # the JSON's order, as it came

    @property
    def counted_input(self) -> int:
        """Input tokens as the rate limits count them: uncached input and cache writes."""
        return self.input_tokens + self.cache_write_tokens

    def __add__(self, more: Usage) -> Usage:
        """Several calls (one job's turns) added up: every number summed, any other field as
        it came first."""
        out = self.to_json()
        for key, value in more.to_json().items():
            if _number(value):
                out[key] = out.get(key, 0) + value
            elif key not in out:
                out[key] = value
        return Usage.from_json(out)

    def to_json(self) -> dict[str, Any]:
        """The API's `usage` dict, as it came."""
        values: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
        }
        values.update(self.api_fields)  # the API's own value wins
        keys = self.keys or (
            "input_tokens",
            "output_tokens",
            *(k for k in ("cache_creation_input_tokens", "cache_read_input_tokens") if self._count(k)),
            *dict(self.api_fields),
        )
        return {k: values[k] for k in keys}

    def _count(self, key: str) -> int:
        count: int = getattr(self, _COUNTS[key])
        return count

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Usage:
        counts = {_COUNTS[k]: int(v) for k, v in data.items() if k in _COUNTS and _number(v)}
        extra = tuple((k, v) for k, v in data.items() if k not in _COUNTS or not _number(v))
        return cls(**counts, api_fields=extra, keys=tuple(data))


@by_fields
@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job failed for good: the API's error type and message (secrets redacted), its HTTP
    status when there was one."""

    type: str
    message: str
    status_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "status_code": self.status_code}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobError:
        return cls(data.get("type", "error"), data.get("message", ""), data.get("status_code"))


@by_fields
@dataclass(frozen=True, slots=True)
class JobResult:
    """What a worker reports when it is done with a job."""

    seq: int
    succeeded: bool
    model: str
    attempts: int
    output: str | None = None
    stop_reason: str | None = None
    usage: Usage | None = None
    cost_usd: float = 0.0
    error: JobError | None = None
    attempt_log: tuple[Attempt, ...] | None = None  # every call, and the tools each asked for
    latency_s: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cache_key: str | None = None  # set on a fresh success the result cache should keep
    endpoint: str | None = None  # the named endpoint that made the last call; None: the only one
    checks: CheckRecord | None = None  # its output schema and checks, when the job has any

    @classmethod
    def failed_now(cls, seq: int, model: str, error_type: str, message: str) -> JobResult:
        """A job failed for good without a call (its worker died under it too often, a request
        Message Batches cannot make, an internal error)."""
        now = time.time()
        error = JobError(error_type, message)
        return cls(seq, False, model, 0, error=error, started_at=now, finished_at=now)
