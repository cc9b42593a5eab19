"""`anvil compare` as one value: each side's figures (jobs, outcomes, pass rate, mean score, cost,
judges' cost, re-asks, latency, tokens), each other side against the first (B − A and B / A),
the jobs that flipped between pass and fail, the jobs only one side has, and the cheapest side
whose pass rate meets a target. Built from `sides.SideRows` (the journal's rows); every view
(terminal, JSON, HTML) renders this value and computes nothing of its own.

A job *passes* when it succeeded and every check of its answer passed (one without checks passes
when it succeeded); it *fails* when it failed or a check failed; an unfinished job does neither
and never flips. The pass rate, mean score, re-asks and judges' cost are `summarize_checks`'s
(finished jobs with checks); cost per job is the side's cost over its finished jobs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from anvil_cli.engine.journal.store import FAILED, SUCCEEDED, Journal
from anvil_cli.errors import UsageError
from anvil_cli.policy.checks.record import CheckRecord
from anvil_cli.snapshot.checks import ChecksSummary
from anvil_cli.snapshot.histograms import percentile
from anvil_cli.views.compare.fmt import Number, fmt_value
from anvil_cli.views.compare.sides import MAX_DETAIL_CHARS, JobFacts, SideRows, runs_side, variant_sides

COMPARE_VERSION: Final = 1
USAGE: Final = "name two runs (anvil compare RUN_A RUN_B), or one run and its variants (--variants A B)"
DEFAULT_PASS_RATE: Final = 0.95
_RATE_SLACK: Final = 1e-12  # 19/20 meets 0.95 however the division rounds


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the comparison: its key in the JSON, its label, and how it reads (`unit`:
    count, rate (0..1), score (0..1), usd, s)."""

    key: str
    label: str
    unit: str


FIGURES: Final = (
    Figure("jobs", "jobs", "count"),
    Figure("succeeded", "succeeded", "count"),
    Figure("failed", "failed", "count"),
    Figure("checked", "checked", "count"),
    Figure("pass_rate", "pass rate", "rate"),
    Figure("mean_score", "mean score", "score"),
    Figure("cost_usd", "cost", "usd"),
    Figure("cost_per_job_usd", "cost per job", "usd"),
    Figure("judge_cost_usd", "judges' cost", "usd"),
    Figure("reasks", "re-asks", "count"),
    Figure("reask_cost_usd", "re-asks' cost", "usd"),
    Figure("latency_p50_s", "latency p50", "s"),
    Figure("latency_p95_s", "latency p95", "s"),
    Figure("input_tokens", "input tokens", "count"),
    Figure("output_tokens", "output tokens", "count"),
)


@dataclass(frozen=True, slots=True)
class Side:
    """A run or a variant, and its figures (a value, or None where there is none: no pass rate
    without checked jobs, no latency without finished ones)."""

    name: str
    run_id: str
    variant: str | None
    figures: Mapping[str, Number | None]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "run_id": self.run_id, "variant": self.variant, **self.figures}


@dataclass(frozen=True, slots=True)
class Flip:
    """A job that passed on one side and failed on the other, with what failed on each."""

    id: str
    a_failures: tuple[Mapping[str, str | None], ...]
    b_failures: tuple[Mapping[str, str | None], ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "a_failures": list(self.a_failures), "b_failures": list(self.b_failures)}


@dataclass(frozen=True, slots=True)
class Pair:
    """Side `b` against side `a` (the first): each figure's difference and ratio, the flips and
    the jobs only one of them has (in batch order)."""

    a: str
    b: str
    differences: Mapping[str, Mapping[str, float | None]]
    pass_to_fail: tuple[Flip, ...]
    fail_to_pass: tuple[Flip, ...]
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    matched: int

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "matched": self.matched,
            "differences": {k: dict(v) for k, v in self.differences.items()},
            "pass_to_fail": [f.to_json() for f in self.pass_to_fail],
            "fail_to_pass": [f.to_json() for f in self.fail_to_pass],
            "only_a": list(self.only_a),
            "only_b": list(self.only_b),
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """Everything `anvil compare` shows. `cheapest`: the side with the lowest cost per job among
    those whose pass rate is at least `pass_rate_target`, else None; `best`: the side with the
    highest pass rate (None when no side has checked jobs)."""

    matched_by: str  # "id" (two runs) or "base_id" (variants of a run)
    sides: tuple[Side, ...]
    pairs: tuple[Pair, ...]
    pass_rate_target: float
    cheapest: str | None
    best: str | None

    def side(self, name: str) -> Side:
        return next(s for s in self.sides if s.name == name)

    def verdict(self) -> str:
        """The answer to "which side is cheapest at the target pass rate?", in one sentence."""
        target = f"{self.pass_rate_target * 100:.4g}%"
        if self.cheapest is not None:
            side = self.side(self.cheapest)
            rate, per_job = fmt_value("rate", side.figures["pass_rate"]), side.figures["cost_per_job_usd"]
            return (
                f"cheapest with a pass rate of at least {target}: {side.name} "
                f"(pass rate {rate}, {fmt_value('usd', per_job)} per job)"
            )
        if self.best is None:
            return f"no side has checked jobs: none can be said to pass at {target}"
        best = self.side(self.best)
        return (
            f"no side has a pass rate of at least {target}; the best is {best.name} "
            f"at {fmt_value('rate', best.figures['pass_rate'])}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "compare_version": COMPARE_VERSION,
            "matched_by": self.matched_by,
            "pass_rate_target": self.pass_rate_target,
            "sides": [s.to_json() for s in self.sides],
            "pairs": [p.to_json() for p in self.pairs],
            "cheapest": self.cheapest,
            "best_pass_rate": self.best,
            "verdict": self.verdict(),
        }


def _record(job: JobFacts) -> CheckRecord | None:
    return CheckRecord.from_json(job.checks) if job.checks is not None else None


def _check_figures(summary: ChecksSummary | None) -> dict[str, Number | None]:
    """What `summarize_checks` found on a side: checked jobs, pass rate, mean score, re-asks, and
    what re-asks and judges cost."""
    if summary is None:
        return {"checked": 0, "pass_rate": None, "mean_score": None, "judge_cost_usd": 0.0,
                "reasks": 0, "reask_cost_usd": 0.0}  # fmt: skip
    return {
        "checked": summary.checked,
        "pass_rate": summary.pass_rate,
        "mean_score": summary.mean_score,
        "judge_cost_usd": summary.judge_cost_usd,
        "reasks": summary.reasks,
        "reask_cost_usd": summary.reask_cost_usd,
    }


def side_figures(side: SideRows) -> dict[str, Number | None]:
    """A side's figures, in `FIGURES` order."""
    jobs = side.jobs
    succeeded = sum(1 for j in jobs if j.state == SUCCEEDED)
    failed = sum(1 for j in jobs if j.state == FAILED)
    cost = math.fsum(j.cost_usd for j in jobs)
    finished = [j for j in jobs if j.state in (SUCCEEDED, FAILED)]
    latencies = sorted(j.latency_s for j in finished if j.latency_s is not None)
    figures: dict[str, Number | None] = {
        "jobs": len(jobs),
        "succeeded": succeeded,
        "failed": failed,
        **_check_figures(side.checks),
        "cost_usd": cost,
        "cost_per_job_usd": cost / (succeeded + failed) if succeeded + failed else None,
        "latency_p50_s": percentile(latencies, 50.0),
        "latency_p95_s": percentile(latencies, 95.0),
        "input_tokens": sum(j.input_tokens for j in jobs),
        "output_tokens": sum(j.output_tokens for j in jobs),
    }
    return {f.key: figures[f.key] for f in FIGURES}


def passed(job: JobFacts) -> bool | None:
    """Whether a job passed (see the module docstring); None while it is unfinished."""
    if job.state == FAILED:
        return False
    if job.state != SUCCEEDED:
        return None
    record = _record(job)
    return record is None or record.passed


def failures(job: JobFacts) -> tuple[dict[str, str | None], ...]:
    """What failed on a job: its failed checks (name and detail), else its error's type."""
    record = _record(job)
    out = tuple(
        {"name": r.name, "detail": r.detail[:MAX_DETAIL_CHARS] if r.detail else None}
        for r in (record.failures() if record is not None else ())
    )
    if not out and job.state == FAILED:
        out = ({"name": "error", "detail": job.error_type},)
    return out


def _difference(a: Number | None, b: Number | None) -> dict[str, float | None]:
    if a is None or b is None:
        return {"diff": None, "ratio": None}
    return {"diff": b - a, "ratio": b / a if a else None}


def _pair(a: SideRows, fa: Mapping[str, Number | None], b: SideRows, fb: Mapping[str, Number | None]) -> Pair:
    a_jobs = {j.key: j for j in a.jobs}
    b_jobs = {j.key: j for j in b.jobs}
    to_fail: list[Flip] = []
    to_pass: list[Flip] = []
    for key, job_a in a_jobs.items():
        job_b = b_jobs.get(key)
        if job_b is None:
            continue
        was, now = passed(job_a), passed(job_b)
        if was is not None and now is not None and was != now:
            (to_fail if was else to_pass).append(Flip(key, failures(job_a), failures(job_b)))
    return Pair(
        a=a.name,
        b=b.name,
        differences={f.key: _difference(fa[f.key], fb[f.key]) for f in FIGURES},
        pass_to_fail=tuple(to_fail),
        fail_to_pass=tuple(to_pass),
        only_a=tuple(k for k in a_jobs if k not in b_jobs),
        only_b=tuple(k for k in b_jobs if k not in a_jobs),
        matched=sum(1 for k in a_jobs if k in b_jobs),
    )


def _cheapest(sides: Sequence[Side], target: float) -> str | None:
    meeting = [
        s
        for s in sides
        if s.figures["pass_rate"] is not None
        and s.figures["pass_rate"] >= target - _RATE_SLACK
        and s.figures["cost_per_job_usd"] is not None
    ]
    return min(meeting, key=lambda s: s.figures["cost_per_job_usd"] or 0.0).name if meeting else None


def _best(sides: Sequence[Side]) -> str | None:
    rated = [s for s in sides if s.figures["pass_rate"] is not None]
    return max(rated, key=lambda s: s.figures["pass_rate"] or 0.0).name if rated else None


def compare(rows: Sequence[SideRows], *, matched_by: str, pass_rate: float = DEFAULT_PASS_RATE) -> Comparison:
    """The comparison of two or more sides: the first is the one the others are set against."""
    figures = [side_figures(r) for r in rows]
    sides = tuple(Side(r.name, r.run_id, r.variant, f) for r, f in zip(rows, figures, strict=True))
    pairs = tuple(_pair(rows[0], figures[0], r, f) for r, f in zip(rows[1:], figures[1:], strict=True))
    return Comparison(matched_by, sides, pairs, pass_rate, _cheapest(sides, pass_rate), _best(sides))


def build_comparison(
    journal: Journal,
    runs: Sequence[str],  # none: the latest run's variants
    variants: Sequence[str] | None = None,
    *,
    pass_rate: float = DEFAULT_PASS_RATE,
) -> Comparison:
    """`anvil compare`'s value from the journal: two runs (`runs` = [A, B]), or variants of one
    (`runs` = [RUN]; `variants` the ones to compare, or None for all of them). UsageError (exit
    2) for an unknown run or variant, a pass rate outside 0..1, or arguments that do not fit."""
    if not 0.0 <= pass_rate <= 1.0:
        raise UsageError(f"--pass-rate must be between 0 and 1 (0.95 is 95%), got {pass_rate:g}")
    if len(runs) == 2 and variants is None:
        a, b = runs_side(journal, runs[0]), runs_side(journal, runs[1])
        if a.run_id == b.run_id:
            raise UsageError(f"both names are run {a.run_id}: name two runs, or one run with --variants A B")
        return compare([a, b], matched_by="id", pass_rate=pass_rate)
    if len(runs) <= 1:
        run = runs[0] if runs else None
        return compare(variant_sides(journal, run, variants), matched_by="base_id", pass_rate=pass_rate)
    raise UsageError(USAGE)
