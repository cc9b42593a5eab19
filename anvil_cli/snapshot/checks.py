"""How a run's answers fared against their checks: pass rate and mean score over the jobs
finished with a `CheckRecord`, by model, by variant and by each metadata key of
`settings.checks.by`; the re-asks the output schemas took and what the judges cost, apart.

Pure and streaming: `summarize_checks(rows, by)` reads the journal's job rows once
(`Journal.iter_results`, each `engine/journal/rows.py:job_row`), keeping only counters, and
gives a frozen `ChecksSummary`, or None when no job has checks (every view then shows nothing
new). `ChecksTally` is the same count kept open, for whoever adds rows as they come.

A job counts as *checked* once it is finished (succeeded or failed) with a `checks` record; it
*passed* when it succeeded and every check passed (a failed job with a record, e.g. an answer
that never matched its schema, did not). Its *score* is the record's mean check score. A group
(a model, a variant, a metadata value) also counts every job in it, checked or not (`jobs`),
and what they cost (`cost_usd`, their whole cost: judges and re-asks included).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anvil_cli.snapshot import types

FINISHED_STATES = ("succeeded", "failed")  # engine.journal.rows.JobState values, finished


def _rate(passed: int, checked: int) -> float | None:
    return round(passed / checked, 6) if checked else None


def _mean(total: float, n: int) -> float | None:
    return round(total / n, 6) if n else None


@dataclass(frozen=True, slots=True)
class ChecksGroup:
    """The checked answers of one model, variant or metadata value."""

    checked: int
    passed: int
    mean_score: float | None
    cost_usd: float
    jobs: int

    @property
    def pass_rate(self) -> float | None:
        return _rate(self.passed, self.checked)

    def to_json(self) -> types.ChecksGroup:
        return {
            "checked": self.checked,
            "passed": self.passed,
            "pass_rate": self.pass_rate,
            "mean_score": self.mean_score,
            "cost_usd": round(self.cost_usd, 8),
            "jobs": self.jobs,
        }


@dataclass(frozen=True, slots=True)
class CheckStats:
    """One named check over every answer it was run on."""

    passed: int
    total: int
    mean_score: float | None

    def to_json(self) -> types.CheckStats:
        return {"passed": self.passed, "total": self.total, "mean_score": self.mean_score}


@dataclass(frozen=True, slots=True)
class ChecksSummary:
    """A run's checks (see the module docstring)."""

    checked: int
    passed: int
    mean_score: float | None
    reasks: int
    reask_cost_usd: float
    judge_cost_usd: float
    per_check: Mapping[str, CheckStats] = field(default_factory=dict)
    by_model: Mapping[str, ChecksGroup] = field(default_factory=dict)
    by_variant: Mapping[str, ChecksGroup] = field(default_factory=dict)
    by: Mapping[str, Mapping[str, ChecksGroup]] = field(default_factory=dict)

    @property
    def pass_rate(self) -> float | None:
        return _rate(self.passed, self.checked)

    def to_json(self) -> types.Checks:
        return {
            "checked": self.checked,
            "passed": self.passed,
            "pass_rate": self.pass_rate,
            "mean_score": self.mean_score,
            "reasks": self.reasks,
            "reask_cost_usd": round(self.reask_cost_usd, 8),
            "judge_cost_usd": round(self.judge_cost_usd, 8),
            "per_check": {name: s.to_json() for name, s in self.per_check.items()},
            "by_model": {k: g.to_json() for k, g in self.by_model.items()},
            "by_variant": {k: g.to_json() for k, g in self.by_variant.items()},
            "by": {key: {v: g.to_json() for v, g in groups.items()} for key, groups in self.by.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChecksSummary:
        """A summary back from `to_json` (as a stored snapshot keeps it)."""

        def group(g: Mapping[str, Any]) -> ChecksGroup:
            return ChecksGroup(
                int(g.get("checked") or 0),
                int(g.get("passed") or 0),
                g.get("mean_score"),
                float(g.get("cost_usd") or 0.0),
                int(g.get("jobs") or 0),
            )

        def groups(d: Any) -> dict[str, ChecksGroup]:
            return {str(k): group(v) for k, v in (d or {}).items() if isinstance(v, Mapping)}

        return cls(
            checked=int(data.get("checked") or 0),
            passed=int(data.get("passed") or 0),
            mean_score=data.get("mean_score"),
            reasks=int(data.get("reasks") or 0),
            reask_cost_usd=float(data.get("reask_cost_usd") or 0.0),
            judge_cost_usd=float(data.get("judge_cost_usd") or 0.0),
            per_check={
                str(k): CheckStats(int(v.get("passed") or 0), int(v.get("total") or 0), v.get("mean_score"))
                for k, v in (data.get("per_check") or {}).items()
                if isinstance(v, Mapping)
            },
            by_model=groups(data.get("by_model")),
            by_variant=groups(data.get("by_variant")),
            by={str(k): groups(v) for k, v in (data.get("by") or {}).items()},
        )


class _Counts:
    """A group's counters while rows stream past."""

    __slots__ = ("checked", "cost_usd", "jobs", "passed", "score_sum", "scored")

    def __init__(self) -> None:
        self.checked = self.passed = self.jobs = self.scored = 0
        self.score_sum = self.cost_usd = 0.0

    def add(self, cost_usd: float, checked: bool, passed: bool, score: float | None) -> None:
        self.jobs += 1
        self.cost_usd += cost_usd
        if checked:
            self.checked += 1
            self.passed += passed
            if score is not None:
                self.scored += 1
                self.score_sum += score

    def frozen(self) -> ChecksGroup:
        mean = _mean(self.score_sum, self.scored)
        return ChecksGroup(self.checked, self.passed, mean, self.cost_usd, self.jobs)


def metadata_value(value: Any) -> str:
    """A metadata value as a group's name: a string as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


class ChecksTally:
    """The count `summarize_checks` keeps, open: `add_row` each job row, `summary()` any time."""

    def __init__(self, by: Sequence[str] = ()) -> None:
        self.by = tuple(by)
        self.total = _Counts()
        self.reasks = 0
        self.reask_cost_usd = 0.0
        self.judge_cost_usd = 0.0
        self.per_check: dict[str, list[float]] = {}  # name -> [passed, total, score sum]
        self.by_model: dict[str, _Counts] = {}
        self.by_variant: dict[str, _Counts] = {}
        self.by_key: dict[str, dict[str, _Counts]] = {key: {} for key in self.by}

    def add_result(self, succeeded: bool, model: str, cost_usd: float, checks: Any) -> None:
        """A job finished in this session (`JobResult`: its model, cost and `CheckRecord`), its
        variant and metadata not known (the journal's figures have them)."""
        if checks is None:  # counted as `add_row` counts a finished row without checks
            cost = float(cost_usd or 0.0)
            self.total.add(cost, False, False, None)
            if model:
                counts = self.by_model.get(str(model))
                if counts is None:
                    counts = self.by_model[str(model)] = _Counts()
                counts.add(cost, False, False, None)
            return
        state = "succeeded" if succeeded else "failed"
        self.add_row({"state": state, "model": model, "cost_usd": cost_usd, "checks": checks.to_json()})

    def add_row(self, row: Mapping[str, Any]) -> None:
        """One job row (`job_row`): counted in its groups; its checks when it is finished with some."""
        raw_job = row.get("job")
        job: Mapping[str, Any] = raw_job if isinstance(raw_job, Mapping) else {}
        record = row.get("checks")
        finished = row.get("state") in FINISHED_STATES
        checked = finished and isinstance(record, Mapping)
        passed = False
        score: float | None = None
        if checked:
            assert isinstance(record, Mapping)
            passed = row.get("state") == "succeeded" and bool(record.get("passed"))
            raw = record.get("score")
            score = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
            self._add_record(record)
        cost = float(row.get("cost_usd") or 0.0)
        self.total.add(cost, checked, passed, score)
        model = row.get("model") or job.get("model")
        if model:
            self.by_model.setdefault(str(model), _Counts()).add(cost, checked, passed, score)
        variant = job.get("variant")
        if variant:
            self.by_variant.setdefault(str(variant), _Counts()).add(cost, checked, passed, score)
        metadata = job.get("metadata")
        if self.by and isinstance(metadata, Mapping):
            for key in self.by:
                if key in metadata and metadata[key] is not None:
                    counts = self.by_key[key].setdefault(metadata_value(metadata[key]), _Counts())
                    counts.add(cost, checked, passed, score)

    def _add_record(self, record: Mapping[str, Any]) -> None:
        self.reasks += int(record.get("reasks") or 0)
        self.reask_cost_usd += float(record.get("reask_cost_usd") or 0.0)
        self.judge_cost_usd += float(record.get("judge_cost_usd") or 0.0)
        for result in record.get("results") or ():
            if not isinstance(result, Mapping):
                continue
            stats = self.per_check.setdefault(str(result.get("name", "")), [0, 0, 0.0])
            stats[0] += bool(result.get("passed"))
            stats[1] += 1
            stats[2] += float(result.get("score") or 0.0)

    def summary(self) -> ChecksSummary | None:
        """What was counted, or None when no job was checked."""
        if not self.total.checked:
            return None

        def sorted_groups(groups: Mapping[str, _Counts]) -> dict[str, ChecksGroup]:
            return {k: c.frozen() for k, c in sorted(groups.items())}

        total = self.total.frozen()
        return ChecksSummary(
            checked=total.checked,
            passed=total.passed,
            mean_score=total.mean_score,
            reasks=self.reasks,
            reask_cost_usd=self.reask_cost_usd,
            judge_cost_usd=self.judge_cost_usd,
            per_check={
                name: CheckStats(int(s[0]), int(s[1]), _mean(s[2], int(s[1])))
                for name, s in sorted(self.per_check.items())
            },
            by_model=sorted_groups(self.by_model),
            by_variant=sorted_groups(self.by_variant),
            by={key: sorted_groups(groups) for key, groups in self.by_key.items()},
        )


def summarize_checks(rows: Iterable[Mapping[str, Any]], by: Sequence[str] = ()) -> ChecksSummary | None:
    """The checks of a run's job rows (one pass), or None when no job has checks."""
    tally = ChecksTally(by)
    for row in rows:
        tally.add_row(row)
    return tally.summary()
