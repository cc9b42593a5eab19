"""`anvil plan --sample N`: run a few jobs of the batch for real, so the plan fits what answers
actually look like instead of assuming (see `anvil_cli.policy.forecast`).

The jobs are chosen to cover the batch: each model gets at least the three answers a fit needs
(where N allows), the rest in proportion to its jobs x the square root of its output price (the
best precision for a given spend: an expensive model's answers weigh more in the total, but
each costs more to sample), spread over its prompt lengths (evenly spaced in its jobs sorted by
size). They run as a run of their own through the ordinary engine, under a budget cap of
`max_usd` (the governor's worst-case reservations hold it), so they are journaled like any run
and their answers go into the result cache: the batch's run then takes them from the cache and
pays for them once. Sampling the same jobs again resumes (or reuses) that run, paying nothing
more. The run's kind is "sample": it never becomes "the latest run" of `anvil status`, `export`
or `report`. `--sample auto` (plan/autosample.py) runs several such samples, one per round:
`choose_more` picks each round's jobs among those not sampled yet, and `read_outcome` reads the
answers and spend of all its runs.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.journal.kind import SAMPLE_KIND, SAMPLES_DIR
from anvil_cli.engine.output import secure_write_lines
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.toolspec import split_tools
from anvil_cli.plan.checks import sampled_grades, sampled_reasks
from anvil_cli.policy.forecast import MIN_ANSWERS, Answer
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.policy.routing import model_for
from anvil_cli.policy.tokens import estimate_input_tokens

if TYPE_CHECKING:
    from anvil_cli.engine.process.signals import SignalState

MIN_PER_MODEL = MIN_ANSWERS  # the fewest answers a model's fit needs


@dataclass(frozen=True, slots=True)
class SampleOutcome:
    """What the sample run did: its answers, what it cost, and anything worth saying."""

    run_id: str
    jobs: int
    answers: list[Answer]
    spent_usd: float
    cap_usd: float
    stop_reason: str | None
    notes: list[str]
    reasks: list[int] = field(default_factory=list)  # re-asks per finished job with an output schema
    grades: dict[str, float] = field(default_factory=dict)  # judges' mean output tokens per model
    answered: dict[str, int] = field(default_factory=dict)  # output tokens of each job answered, by id

    def as_dict(self) -> dict[str, Any]:
        out = {
            "run_id": self.run_id,
            "jobs": self.jobs,
            "answers": len(self.answers),
            "spent_usd": round(self.spent_usd, 6),
            "cap_usd": self.cap_usd,
            "stop_reason": self.stop_reason,
        }
        if self.reasks:  # only with output schemas: other plans' JSON is as it was
            out["schema_jobs"] = len(self.reasks)
            out["reasks"] = sum(self.reasks)
        return out


def choose(jobs: Sequence[Job], n: int, settings: Settings) -> list[Job]:
    """`n` jobs that cover the batch: per model in proportion, across prompt lengths."""
    return choose_more(jobs, n, settings, ())


def choose_more(jobs: Sequence[Job], n: int, settings: Settings, taken: Collection[str]) -> list[Job]:
    """`n` more jobs, none of `taken` (ids of jobs already sampled), chosen as `choose` chooses:
    the models' shares of all the answers (those taken and these), each model's new ones spread
    over the prompt lengths of its jobs not yet taken."""
    by_model: dict[str, list[tuple[int, int]]] = {}  # model -> (estimated tokens, index), not taken
    counts: dict[str, int] = {}
    have: dict[str, int] = {}
    for i, job in enumerate(jobs):
        model = model_for(job, settings.routing)
        counts[model] = counts.get(model, 0) + 1
        if job.id in taken:
            have[model] = have.get(model, 0) + 1
        else:
            by_model.setdefault(model, []).append((estimate_input_tokens(job.request(model)), i))
    pricer = Pricer.from_settings(settings)
    weights = {m: c * math.sqrt(_output_price(pricer, m)) for m, c in counts.items()}
    total = min(n + sum(have.values()), len(jobs))
    shares = _shares(counts, weights, total, have)
    chosen: list[int] = []
    for model, group in by_model.items():
        k = min(len(group), shares.get(model, 0) - have.get(model, 0))
        if k <= 0:
            continue
        group.sort()
        step = len(group) / k
        chosen += [group[min(len(group) - 1, int(step * j + step / 2))][1] for j in range(k)]
    return [jobs[i] for i in sorted(chosen)]


def _output_price(pricer: Pricer, model: str) -> float:
    price = pricer.price(model)
    return price.output if price is not None and price.output > 0 else 1.0


def _shares(
    counts: dict[str, int], weights: dict[str, float], n: int, start: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Jobs to sample per model, `n` in all: at least MIN_PER_MODEL each (the weightiest models
    first while n lasts), the rest in proportion to the weights (never more than a model's
    jobs); from `start` (the answers each model has already) when given."""
    shares = {m: (start or {}).get(m, 0) for m in counts}
    left = n - sum(shares.values())
    for model in sorted(counts, key=lambda m: -weights[m]):
        take = max(0, min(MIN_PER_MODEL - shares[model], counts[model] - shares[model], left))
        shares[model] += take
        left -= take
    total = sum(weights.values()) or 1.0
    while left > 0:
        open_models = [m for m in counts if shares[m] < counts[m]]
        if not open_models:
            break
        # the model furthest below its proportional share gets the next one
        model = max(open_models, key=lambda m: weights[m] / total * n - shares[m])
        shares[model] += 1
        left -= 1
    return shares


def sample_path(settings: Settings, batch: Path, jobs: Sequence[Job]) -> Path:
    """Where the sample's jobs are written: named by the batch and the jobs chosen, so the same
    sample is the same file (and its run is resumed, not paid again)."""
    digest = hashlib.sha256("\n".join(batch_line(j) for j in jobs).encode()).hexdigest()[:12]
    return settings.state_dir / SAMPLES_DIR / f"{batch.stem}-{digest}.jsonl"


def batch_line(job: Job) -> str:
    """The job as a JSONL batch line that loads back into the same request."""
    record: dict[str, Any] = {
        "id": job.id,
        "messages": job.messages,
        "model": job.model,
        "max_tokens": job.max_tokens,
        "priority": job.priority.label,
        "metadata": job.metadata,
        **job.params,
    }
    if job.system is not None:
        record["system"] = job.system
    if job.complexity is not None:
        record["complexity"] = job.complexity
    if job.output_schema is not None:  # checked as the batch's run will check it
        record["output_schema"] = job.output_schema
    if job.checks:
        record["checks"] = [user_form(c) for c in job.checks]
    return json.dumps(record, ensure_ascii=False)


def user_form(check: dict[str, Any]) -> dict[str, Any]:
    """A normalised check (`policy/checks/spec.py`) as a batch file writes it (what
    `jobs/checkspec.py` reads back into the same normalised check)."""
    kind = check.get("kind", "")
    out: dict[str, Any] = {"name": check.get("name")}
    if kind in ("equals", "contains", "regex"):
        key = {"equals": "value", "contains": "values", "regex": "pattern"}[kind]
        out.update({kind: check.get(key), "ignore_case": bool(check.get("ignore_case"))})
    elif kind == "json_path":
        op = check.get("op", "equals")
        value = {"equals": check.get("value"), "in": check.get("values")}.get(op)
        out.update(
            {
                "json_path": check.get("path"),
                op: value if op != "range" else [check.get("min"), check.get("max")],
            }
        )
    elif kind == "length":
        out["length"] = {k: check.get(k) for k in ("min", "max", "unit") if check.get(k) is not None}
    elif kind == "judge":
        keys = ("rubric", "model", "scale", "pass_at")
        out["judge"] = {k: check[k] for k in keys if check.get(k) is not None}
    return out


def run_sample(
    settings: Settings,
    batch: Path,
    jobs: Sequence[Job],
    *,
    simulate: bool,
    max_usd: float,
    allow_tools: bool = False,
    signals: SignalState | None = None,
) -> SampleOutcome:
    """Run `jobs` for real (at most `max_usd`), journaled and cached; their answers. Without
    `allow_tools` no tool command runs (a CI gate may plan an untrusted change): a tool job is
    sampled for its first answer only, its tools offered to the model but not run. `signals`:
    handlers the caller holds across several samples (`--sample auto`), else the run's own."""
    held = 0 if allow_tools else sum(1 for j in jobs if split_tools(j.params)[1])
    jobs = jobs if allow_tools else [first_turn_only(j) for j in jobs]
    from anvil_cli.session.runner import RunOptions, execute_run

    path = sample_path(settings, batch, jobs)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        secure_write_lines(path, (batch_line(j) for j in jobs))
    budget = settings.budget.model_copy(update={"max_usd": max_usd, "warn_usd": None})
    capped = settings.model_copy(update={"budget": budget})
    report = execute_run(capped, RunOptions(batch=path, simulate=simulate, kind=SAMPLE_KIND), signals)
    notes = []
    if not settings.cache.enabled:
        notes.append(
            "the result cache is off (cache.enabled): the batch's run will pay for the sampled jobs again"
        )
    if report.summary.get("stop_reason") == "budget":
        notes.append(
            f"the sample stopped at its cap of ${max_usd:.2f} (--sample-max-usd): fewer answers to fit"
        )
    if held:
        notes.append(
            f"{held} tool job(s) sampled for their first answer only: no tool command ran"
            " (--allow-tools runs them)"
        )
    stop = report.summary.get("stop_reason")
    return read_outcome(settings, [report.run_id], len(jobs), max_usd, stop, notes)


def read_outcome(
    settings: Settings, run_ids: Sequence[str], jobs: int, cap_usd: float, stop: str | None, notes: list[str]
) -> SampleOutcome:
    """What the sample runs `run_ids` answered and spent, from the journal (the first run's id
    names the outcome)."""
    from anvil_cli.engine.journal.history import history_answers
    from anvil_cli.engine.journal.store import Journal

    answers: list[Answer] = []
    rows: list[dict[str, Any]] = []
    spent = 0.0
    with Journal.open(settings.state_dir) as journal:
        for run_id in run_ids:
            answers += history_answers(journal, only_run=run_id)
            spent += journal.totals(run_id)["cost_usd"]
            rows += journal.iter_results(run_id)
    reasks, grades = sampled_reasks(rows), sampled_grades(rows)
    answered = {str(r["id"]): int(r["usage"]["output_tokens"]) for r in rows if _answered(r)}
    return SampleOutcome(run_ids[0], jobs, answers, spent, cap_usd, stop, notes, reasks, grades, answered)


def _answered(row: dict[str, Any]) -> bool:
    usage = row.get("usage")
    return (
        row.get("state") == "succeeded"
        and isinstance(usage, dict)
        and isinstance(usage.get("output_tokens"), int)
    )


def first_turn_only(job: Job) -> Job:
    """`job` with its tools offered as plain tools: the model's first answer, whatever it asks
    for, ends the job (`stop_reason: tool_use`) and no command runs."""
    tools = job.params.get("tools")
    if not isinstance(tools, list):
        return job
    return replace(job, params={**job.params, "tools": split_tools({"tools": tools})[0]["tools"]})
