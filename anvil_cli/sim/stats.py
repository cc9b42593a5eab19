"""Counters of what the simulator answered, served at `GET /_sim/stats`.

A simulated endpoint's counters have the simulator's as their `parent`: whatever one endpoint
counts, the total counts too (a paid duplicate in the total may be two endpoints' first answers).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ModelStats:
    requests: int = 0
    successes: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(slots=True)
class Stats:
    """Counters since start or the last reset."""

    parent: Stats | None = None  # the simulator's total, when these are one endpoint's
    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    successes: int = 0
    in_flight: int = 0
    peak_concurrent: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    paid_duplicates: int = 0
    stream_errors: int = 0
    slowed: int = 0
    refused: int = 0  # requests to an endpoint that was off (connection dropped at once)
    batches_created: int = 0
    batch_requests: int = 0
    structured: int = 0  # answers to a request that asked for a JSON schema
    invalid_answers: int = 0  # answers made invalid on purpose (`invalid=`, the invalid rate)
    by_model: dict[str, ModelStats] = field(default_factory=dict)
    _answered: Counter[str] = field(default_factory=Counter)

    def begin(self) -> None:
        self.in_flight += 1
        self.peak_concurrent = max(self.peak_concurrent, self.in_flight)
        if self.parent is not None:
            self.parent.begin()

    def end(self) -> None:
        self.in_flight -= 1
        if self.parent is not None:
            self.parent.end()

    def stream_error(self) -> None:
        """A streamed answer that ends in an `error` event."""
        self.stream_errors += 1
        if self.parent is not None:
            self.parent.stream_error()

    def refuse(self) -> None:
        """A request to an endpoint that was off."""
        self.refused += 1
        if self.parent is not None:
            self.parent.refuse()

    def batch_created(self, requests: int) -> None:
        """A Message Batch of `requests` items was created."""
        self.batches_created += 1
        self.batch_requests += requests
        if self.parent is not None:
            self.parent.batch_created(requests)

    def shaped(self, structured: bool, invalid: bool) -> None:
        """A paid answer that had a schema to match (`structured`) or was made invalid."""
        self.structured += int(structured)
        self.invalid_answers += int(invalid)
        if self.parent is not None:
            self.parent.shaped(structured, invalid)

    def record(self, status: int | str, model: str | None = None, slowed: bool = False) -> None:
        """One answer (or `"dropped"`) of a Messages API call; `slowed`: the slow fault delayed it."""
        self.requests += 1
        self.by_status[str(status)] += 1
        if slowed:
            self.slowed += 1
        if model is not None:
            self._model(model).requests += 1
        if self.parent is not None:
            self.parent.record(status, model, slowed)

    def _model(self, model: str) -> ModelStats:
        found = self.by_model.get(model)
        if found is None:
            found = self.by_model[model] = ModelStats()
        return found

    def success(self, model: str, digest: str, usage: dict[str, Any]) -> None:
        """A paid answer: counts tokens, and a duplicate when `digest` was answered before."""
        self.successes += 1
        if self._answered[digest]:
            self.paid_duplicates += 1
        self._answered[digest] += 1
        self.input_tokens += usage["input_tokens"]
        self.output_tokens += usage["output_tokens"]
        self.cache_creation_input_tokens += usage["cache_creation_input_tokens"]
        self.cache_read_input_tokens += usage["cache_read_input_tokens"]
        per_model = self._model(model)
        per_model.successes += 1
        per_model.input_tokens += usage["input_tokens"]
        per_model.output_tokens += usage["output_tokens"]
        if self.parent is not None:
            self.parent.success(model, digest, usage)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "rate_limited": self.by_status.get("429", 0),
            "successes": self.successes,
            "in_flight": self.in_flight,
            "peak_concurrent": self.peak_concurrent,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "paid_duplicates": self.paid_duplicates,
            "stream_errors": self.stream_errors,
            "slowed": self.slowed,
            "dropped": self.by_status.get("dropped", 0),
            "refused": self.refused,
            "batches_created": self.batches_created,
            "batch_requests": self.batch_requests,
            "structured": self.structured,
            "invalid_answers": self.invalid_answers,
            "by_model": {
                m: {
                    "requests": s.requests,
                    "successes": s.successes,
                    "input_tokens": s.input_tokens,
                    "output_tokens": s.output_tokens,
                }
                for m, s in self.by_model.items()
            },
        }

    def reset(self) -> None:
        """Clear every counter; requests in flight stay counted as in flight (the parent stays)."""
        in_flight, parent = self.in_flight, self.parent
        fresh = Stats()
        for name in self.__slots__:
            setattr(self, name, getattr(fresh, name))
        self.in_flight, self.parent = in_flight, parent
        self.peak_concurrent = in_flight
