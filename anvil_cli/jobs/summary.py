"""What a batch holds: job counts by model and priority, an input-token estimate, its problems."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anvil_cli.errors import Problem, ProblemLog
from anvil_cli.jobs.stream import iter_batch
from anvil_cli.policy.tokens import estimate_input_tokens


@dataclass
class BatchSummary:
    """The result of one validating pass over a batch file."""

    path: str
    jobs: int = 0
    per_model: Counter[str] = field(default_factory=Counter)
    per_priority: Counter[str] = field(default_factory=Counter)
    per_variant: Counter[str] = field(default_factory=Counter)  # with `variants:` only
    estimated_input_tokens: int = 0  # a local estimate (~4 characters a token), not a count
    problems: list[Problem] = field(default_factory=list)  # the first MAX_KEPT_PROBLEMS
    problem_count: int = 0  # all of them

    @property
    def base_jobs(self) -> int:
        """The jobs as written, before `variants:` multiplied them."""
        return max(self.per_variant.values()) if self.per_variant else self.jobs

    @property
    def ok(self) -> bool:
        return not self.problem_count and not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (for `anvil validate --json`)."""
        data: dict[str, Any] = {
            "path": self.path,
            "ok": self.ok,
            "jobs": self.jobs,
            "per_model": dict(sorted(self.per_model.items())),
            "per_priority": dict(self.per_priority),
            "estimated_input_tokens": self.estimated_input_tokens,
            "problems": [problem_dict(p) for p in self.problems],
            "problem_count": self.problem_count,
        }
        if self.per_variant:  # absent without `variants:`, so existing readers see the same JSON
            data["base_jobs"] = self.base_jobs
            data["per_variant"] = dict(self.per_variant)
        return data


def problem_dict(problem: Problem) -> dict[str, Any]:
    """A Problem as a JSON-able dict (its parts and its one-line text)."""
    return {
        "file": problem.file,
        "line": problem.line,
        "column": problem.column,
        "job_id": problem.job_id,
        "field": problem.field,
        "message": problem.message,
        "text": str(problem),
    }


def summarize_batch(path: Path, *, extra_models: Collection[str] = ()) -> BatchSummary:
    """One streaming pass: count the good jobs and collect every problem."""
    summary = BatchSummary(str(path))
    priority_order: Counter[str] = Counter()
    problems = ProblemLog()
    for item in iter_batch(path, extra_models=extra_models):
        if isinstance(item, Problem):
            problems.add(item)
            continue
        summary.jobs += 1
        summary.per_model[item.model] += 1
        if item.variant is not None:
            summary.per_variant[item.variant] += 1
        priority_order[item.priority.label] += 1
        summary.estimated_input_tokens += estimate_input_tokens(item.request())
    summary.problems, summary.problem_count = problems.kept, problems.total
    summary.per_priority = Counter(
        {
            label: priority_order[label]
            for label in ("critical", "high", "normal", "low")
            if priority_order[label]
        }
    )
    return summary
