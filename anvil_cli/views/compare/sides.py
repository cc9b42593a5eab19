"""What `anvil compare` puts side by side, read from the journal: two runs (jobs matched by
their id), or variants of one run (matched by `Job.base_id`, the id before its "@variant").
Each job's row is kept only as the few facts a comparison needs (`JobFacts`), not its output.
Unknown runs and variants are `UsageError`s (exit 2), with the run lookup of `anvil status`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from anvil_cli.engine.journal.store import Journal
from anvil_cli.errors import UsageError
from anvil_cli.jobs.job import Job
from anvil_cli.snapshot.checks import ChecksSummary, ChecksTally
from anvil_cli.snapshot.status import find_run

MAX_DETAIL_CHARS: Final = 300  # of a failed check's detail or a job's error, as carried here


@dataclass(frozen=True, slots=True)
class JobFacts:
    """One job of one side: what its figures, its match and its flip are made from."""

    key: str  # what it is matched by: its id (two runs) or its base id (variants)
    state: str
    cost_usd: float
    latency_s: float | None
    input_tokens: int
    output_tokens: int
    checks: Mapping[str, Any] | None  # `CheckRecord.to_json()`, as the journal keeps it
    error_type: str | None


@dataclass(frozen=True, slots=True)
class SideRows:
    """One side: a run, or one variant of a run, its jobs in batch order, and how their answers
    fared against their checks (`summarize_checks` over its rows; None when none was checked)."""

    name: str
    run_id: str
    variant: str | None
    jobs: tuple[JobFacts, ...]
    checks: ChecksSummary | None


def _count(usage: Any, key: str) -> int:
    value = usage.get(key) if isinstance(usage, Mapping) else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def _facts(row: Mapping[str, Any], key: str) -> JobFacts:
    error = row.get("error")
    return JobFacts(
        key=key,
        state=str(row["state"]),
        cost_usd=float(row["cost_usd"] or 0.0),
        latency_s=row["latency_s"],
        input_tokens=_count(row["usage"], "input_tokens"),
        output_tokens=_count(row["usage"], "output_tokens"),
        checks=row["checks"] if isinstance(row["checks"], Mapping) else None,
        error_type=str(error.get("type")) if isinstance(error, Mapping) and error.get("type") else None,
    )


def _variant_of(row: Mapping[str, Any]) -> str | None:
    variant = row["job"].get("variant")
    return variant if isinstance(variant, str) else None


def _base_id(row: Mapping[str, Any]) -> str:
    return Job.from_record(row["job"]).base_id


def runs_side(journal: Journal, run: str) -> SideRows:
    """A whole run (id or unique prefix), its jobs matched by their ids."""
    run_id = find_run(journal, run).id
    tally, jobs = ChecksTally(), []
    for row in journal.iter_results(run_id):
        tally.add_row(row)
        jobs.append(_facts(row, str(row["id"])))
    return SideRows(run_id, run_id, None, tuple(jobs), tally.summary())


def variants_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The variants of a run's jobs, in the order they first appear."""
    return list(dict.fromkeys(v for v in (_variant_of(r) for r in rows) if v is not None))


def variant_sides(journal: Journal, run: str | None, wanted: Sequence[str] | None) -> list[SideRows]:
    """The variants of one run (id or unique prefix; None: the latest run): the `wanted` ones in
    that order, or every one when None; their jobs matched by base id. UsageError if the run has
    fewer than two variants to compare, or if one wanted is not among them."""
    run_id = find_run(journal, run).id
    by_variant: dict[str, list[JobFacts]] = {}
    tallies: dict[str, ChecksTally] = {}
    for row in journal.iter_results(run_id):
        variant = _variant_of(row)
        if variant is not None:
            by_variant.setdefault(variant, []).append(_facts(row, _base_id(row)))
            tallies.setdefault(variant, ChecksTally()).add_row(row)
    known = list(by_variant)
    if not known:
        raise UsageError(
            f"run {run_id} has no variants: name a second run to compare it with (anvil compare RUN_A RUN_B)"
        )
    names = list(wanted) if wanted is not None else known
    for name in names:
        if name not in by_variant:
            raise UsageError(f"run {run_id} has no variant {name!r}; its variants: {', '.join(known)}")
    if len(set(names)) < 2:
        if wanted is not None:
            raise UsageError(f"--variants names {names[0]!r} twice: name two different variants")
        raise UsageError(f"run {run_id} has one variant ({known[0]}): there is nothing to compare it with")
    return [
        SideRows(name, run_id, name, tuple(by_variant[name]), tallies[name].summary())
        for name in dict.fromkeys(names)
    ]
