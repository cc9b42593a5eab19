"""What checking a job's answer found: each check's pass/fail and score (`CheckResult`), and
the job's `CheckRecord` (every check, the re-asks its schema took, what its judges cost).
Frozen values that pickle (they ride on `JobResult` across process pipes and Ray); the journal
keeps them as JSON (`to_json`/`from_json`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCHEMA_CHECK = "schema"  # the name and kind of the output schema's check


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of one answer. `score` is in 0..1 (a deterministic check: 1.0 or 0.0; a judge:
    its grade mapped onto 0..1), `value` the judge's grade on its own scale, `detail` why it
    failed (or the judge's reason)."""

    name: str
    kind: str  # schema | equals | contains | regex | json_path | length | judge
    passed: bool
    score: float
    value: float | None = None  # a judge's grade on its scale
    detail: str | None = None
    model: str | None = None  # the judge's model
    # a judge's call: its input tokens (cache reads and writes included) and output tokens
    input_tokens: int | None = None
    output_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "passed": self.passed}
        out["score"] = round(self.score, 6)
        if self.value is not None:
            out["value"] = self.value
        if self.detail is not None:
            out["detail"] = self.detail
        if self.model is not None:
            out["model"] = self.model
        if self.input_tokens is not None:
            out["input_tokens"] = self.input_tokens
        if self.output_tokens is not None:
            out["output_tokens"] = self.output_tokens
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckResult:
        value = data.get("value")
        return cls(
            name=str(data.get("name", "")),
            kind=str(data.get("kind", "")),
            passed=bool(data.get("passed")),
            score=float(data.get("score") or 0.0),
            value=float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None,
            detail=data.get("detail") if isinstance(data.get("detail"), str) else None,
            model=data.get("model") if isinstance(data.get("model"), str) else None,
            input_tokens=_count(data.get("input_tokens")),
            output_tokens=_count(data.get("output_tokens")),
        )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """A job's checks: every result (the schema's first, when the job has one), how many times
    its answer was re-asked for not matching the schema and what those calls cost, and what its
    judges cost (already in the job's `cost_usd`; kept apart here so views can show it apart)."""

    results: tuple[CheckResult, ...] = ()
    reasks: int = 0
    reask_cost_usd: float = 0.0
    judge_cost_usd: float = 0.0

    @property
    def passed(self) -> bool:
        """Every check passed (a job with no checks passes)."""
        return all(r.passed for r in self.results)

    @property
    def score(self) -> float | None:
        """The mean score of its checks (None without any)."""
        if not self.results:
            return None
        return sum(r.score for r in self.results) / len(self.results)

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def to_json(self) -> dict[str, Any]:
        score = self.score
        return {
            "passed": self.passed,
            "score": None if score is None else round(score, 6),
            "results": [r.to_json() for r in self.results],
            "reasks": self.reasks,
            "reask_cost_usd": round(self.reask_cost_usd, 8),
            "judge_cost_usd": round(self.judge_cost_usd, 8),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckRecord:
        results = data.get("results")
        return cls(
            results=tuple(CheckResult.from_json(r) for r in results if isinstance(r, Mapping))
            if isinstance(results, list)
            else (),
            reasks=int(data.get("reasks") or 0),
            reask_cost_usd=float(data.get("reask_cost_usd") or 0.0),
            judge_cost_usd=float(data.get("judge_cost_usd") or 0.0),
        )
