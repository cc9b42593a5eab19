"""A checked job between two of its batches (a job with an output schema or checks): what its
next request is and what its calls so far found and cost. Kept in the journal, in the job's row
(`journal/batches.py` says why there), read back with `from_json`.

Two stages follow the first answer: "reask" (the answer did not match the output schema: the
next request is the job's conversation, each invalid answer and the re-ask after it) and
"judge" (the answer is valid and its deterministic checks are done: the next requests are its
judges', all in one batch, each its own custom_id; a judge that errored is asked again).
`since` is the job's submissions (`jobs.dispatches`) when the stage began: each stage may be
submitted `batches.max_attempts` times, as a first answer may.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from anvil_cli.engine.attempts import Attempt, log_from_json
from anvil_cli.engine.outcomes import Usage
from anvil_cli.policy.checks.record import CheckResult

REASK = "reask"
JUDGE = "judge"


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The follow-up of one checked job (see the module docstring)."""

    stage: str = REASK
    since: int = 0  # the job's submissions when this stage began
    turns: tuple[dict[str, Any], ...] = ()  # appended to the job's messages: answer, re-ask, ...
    reasks: int = 0  # re-asks made
    error: str | None = None  # the last schema error
    cost_usd: float = 0.0  # every call so far (already in the journal's jobs.cost_usd)
    reask_cost_usd: float = 0.0
    judge_cost_usd: float = 0.0
    usage: Usage | None = None  # every call so far, added up
    attempt_log: tuple[Attempt, ...] = ()
    # the judge stage: the valid answer, and the result of each of the job's checks (in the
    # order of `Job.checks`; None: a judge not asked yet), the schema's first when it has one
    answer: str | None = None
    stop_reason: str | None = None
    model: str | None = None
    schema_result: CheckResult | None = None
    results: tuple[CheckResult | None, ...] = field(default=())

    def called(self, usage: Usage, cost_usd: float, attempt: Attempt) -> FollowUp:
        """One more call answered (its cost added to the re-asks' or judges' by its purpose)."""
        return replace(
            self,
            cost_usd=self.cost_usd + cost_usd,
            reask_cost_usd=self.reask_cost_usd + (cost_usd if attempt.purpose == REASK else 0.0),
            judge_cost_usd=self.judge_cost_usd + (cost_usd if attempt.purpose == JUDGE else 0.0),
            usage=usage if self.usage is None else self.usage + usage,
            attempt_log=(*self.attempt_log, attempt),
        )

    def reask(self, answer: str, reask_turn: dict[str, Any], error: str, since: int) -> FollowUp:
        """The answer did not match: ask again, after it, with the re-ask turn."""
        turns = (*self.turns, {"role": "assistant", "content": answer or "(no answer)"}, reask_turn)
        return replace(self, stage=REASK, since=since, turns=turns, reasks=self.reasks + 1, error=error)

    def pending_judges(self) -> list[int]:
        """The indexes (in the job's checks) of the judges still to answer."""
        return [i for i, r in enumerate(self.results) if r is None]

    def judged(self, index: int, result: CheckResult) -> FollowUp:
        results = tuple(result if i == index else r for i, r in enumerate(self.results))
        return replace(self, results=results)

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "since": self.since,
            "turns": list(self.turns),
            "reasks": self.reasks,
            "error": self.error,
            "cost_usd": self.cost_usd,
            "reask_cost_usd": self.reask_cost_usd,
            "judge_cost_usd": self.judge_cost_usd,
            "usage": self.usage.to_json() if self.usage is not None else None,
            "attempt_log": [a.to_json() for a in self.attempt_log],
            "answer": self.answer,
            "stop_reason": self.stop_reason,
            "model": self.model,
            "schema_result": self.schema_result.to_json() if self.schema_result is not None else None,
            "results": [r.to_json() if r is not None else None for r in self.results],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FollowUp:
        usage = data.get("usage")
        schema_result = data.get("schema_result")
        return cls(
            stage=str(data.get("stage", REASK)),
            since=int(data.get("since") or 0),
            turns=tuple(t for t in data.get("turns") or () if isinstance(t, dict)),
            reasks=int(data.get("reasks") or 0),
            error=data.get("error"),
            cost_usd=float(data.get("cost_usd") or 0.0),
            reask_cost_usd=float(data.get("reask_cost_usd") or 0.0),
            judge_cost_usd=float(data.get("judge_cost_usd") or 0.0),
            usage=Usage.from_json(usage) if isinstance(usage, dict) else None,
            attempt_log=log_from_json(data.get("attempt_log")),
            answer=data.get("answer"),
            stop_reason=data.get("stop_reason"),
            model=data.get("model"),
            schema_result=CheckResult.from_json(schema_result) if isinstance(schema_result, dict) else None,
            results=tuple(
                CheckResult.from_json(r) if isinstance(r, dict) else None for r in data.get("results") or ()
            ),
        )
