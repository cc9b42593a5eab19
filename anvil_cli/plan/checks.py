"""What checking a batch's answers costs, for `anvil plan`: its judges and its re-asks, each
priced with the run's prices (at each endpoint's, with `endpoints:`), and the calls they add to
their models' rate-limit pools (plan/schedule.py: the same limits as every call).

Judges: one call per `judge:` check per job, on the judge's model (`judge.judge_model`: the
check's own, else `checks.judge_model`). Its input is the request a worker sends
(`judge.judge_request` over the job's question, `judge.question_of`, asking for its grade as
`engine/requests.with_output_schema` does), estimated locally (`policy/tokens`) with an empty
answer, plus the answer's expected output tokens (what the job's own call is expected to
produce; the quoted answer is cut at `judge.MAX_QUOTED_CHARS`). Its output is a grade,
`{"score": N, "reason": "<one sentence>"}`: `JUDGE_OUTPUT_TOKENS` per call (see below).
Against `--simulate` both are measured on the simulator's own answers (plan/simulated.py): its
filler quoted, its grades' length. Worst case: the answer quoted at the job's `max_tokens`, the
reply at `judge.JUDGE_MAX_TOKENS`, the input priced as 1-hour cache writes (as every worst case).

Re-asks: a job with an output schema whose answer fails it is asked again, up to
`checks.max_reasks` times. Re-ask i sends the job's input plus i x (the invalid answer + the
re-ask message, `schema.reask_message`) and gets an answer as long as the job's. Expected:
the share of jobs re-asked at least i times is `rate^i` for an assumed invalid share `rate`
(`plan.expected_reask_rate`: each answer, re-asks too, fails alike), or with `--sample N`
what the sample's jobs did (their CheckRecords' `reasks`). Worst case: every schema job
re-asked `max_reasks` times, every answer `max_tokens` long.

The p10-p90 range moves by the checks' expected cost (their inputs are counted, their outputs
short or as long as the job's); the worst case holds the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.requests import with_output_schema
from anvil_cli.jobs.job import Job
from anvil_cli.plan.schedule import Load
from anvil_cli.plan.simulated import grade_tokens, quoted_tokens
from anvil_cli.policy.checks.judge import (
    JUDGE_MAX_TOKENS,
    MAX_QUOTED_CHARS,
    grade_schema,
    judge_model,
    judge_request,
    question_of,
)
from anvil_cli.policy.checks.schema import reask_message
from anvil_cli.policy.checks.spec import specs_of
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.policy.tokens import CHARS_PER_TOKEN, PER_MESSAGE_OVERHEAD, estimate_input_tokens, text_tokens

# A judge's reply: `{"score": 4, "reason": "<one sentence>"}` is ~12 tokens of JSON and a
# sentence of 20-35 words (~30-45 tokens); 60 leaves room for a longer reason, so the estimate
# errs high rather than low (at Haiku's prices an output token costs 5 input tokens).
JUDGE_OUTPUT_TOKENS = 60
# what a typical validation error carried into a re-ask reads like (schema.check_answer)
TYPICAL_SCHEMA_ERROR = "at $.answer: 'answer' is a required property"
QUOTED_TOKENS_AT_MOST = int(MAX_QUOTED_CHARS / CHARS_PER_TOKEN)  # of an ASCII answer quoted to a judge

PricersOf = Callable[[str], tuple[Pricer, Pricer]]  # a model's (expected, worst-case) pricer


@dataclass
class JudgePlan:
    """The judge calls on one model."""

    model: str
    calls: int = 0
    input_tokens: int = 0
    expected_output_tokens: float = 0.0
    expected_usd: float = 0.0
    worst_usd: float = 0.0


@dataclass
class ReaskPlan:
    """The re-asks of the answers that fail their output schema."""

    jobs: int  # jobs with an output schema
    max_reasks: int  # checks.max_reasks: at most this many per job
    source: str  # "assumed" (plan.expected_reask_rate) or "sample" (measured)
    invalid_share: float | None  # the assumed share of answers that fail (source "assumed")
    reasked_at_least: list[float]  # share of schema jobs re-asked at least i times, i = 1..max_reasks
    sampled_jobs: int = 0  # source "sample": the sampled jobs with an output schema
    expected_calls: float = 0.0
    max_calls: int = 0
    input_tokens: float = 0.0  # expected
    expected_output_tokens: float = 0.0
    expected_usd: float = 0.0
    worst_usd: float = 0.0


@dataclass
class ChecksPlan:
    """What checking costs: judges per model, re-asks, and their sum (in the plan's total)."""

    judges: list[JudgePlan]
    reasks: ReaskPlan | None
    # "assumed" (JUDGE_OUTPUT_TOKENS), "simulator" (plan/simulated.py) or "sample" (measured)
    judge_output: str = "assumed"
    expected_usd: float = 0.0
    worst_usd: float = 0.0
    loads: list[Load] = field(default_factory=list)  # the calls they add, per model (not in the JSON)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["loads"]
        out["expected_usd"] = round(self.expected_usd, 6)
        out["worst_usd"] = round(self.worst_usd, 6)
        for j in out["judges"]:
            j["expected_usd"], j["worst_usd"] = round(j["expected_usd"], 6), round(j["worst_usd"], 6)
            j["expected_output_tokens"] = round(j["expected_output_tokens"], 1)
        if out["reasks"] is not None:
            r = out["reasks"]
            for key in ("expected_calls", "input_tokens", "expected_output_tokens"):
                r[key] = round(r[key], 1)
            r["expected_usd"], r["worst_usd"] = round(r["expected_usd"], 6), round(r["worst_usd"], 6)
            r["reasked_at_least"] = [round(s, 6) for s in r["reasked_at_least"]]
        return out


def assumed_shares(rate: float, max_reasks: int) -> list[float]:
    """Share of schema jobs re-asked at least i times when each answer fails with `rate`."""
    return [rate**i for i in range(1, max_reasks + 1)]


def measured_shares(reasks: Sequence[int], max_reasks: int) -> list[float]:
    """Share of the sampled schema jobs re-asked at least i times, i = 1..max_reasks."""
    n = len(reasks)
    return [sum(1 for r in reasks if r >= i) / n if n else 0.0 for i in range(1, max_reasks + 1)]


class ChecksPlanner:
    """Adds up the checks' calls job by job (beside make_plan's loop over the batch)."""

    def __init__(
        self,
        settings: Settings,
        pricers_of: PricersOf,
        sampled_reasks: Sequence[int] | None,
        simulated: bool = False,
        sampled_grades: Mapping[str, float] | None = None,
    ) -> None:
        """`simulated`: for the embedded simulator, whose answers and grades are measured
        (plan/simulated.py) rather than assumed; `sampled_grades`: the mean output tokens of a
        sample run's judges, per judge model (`sampled_grades`), used before either."""
        self.simulated = simulated
        self.sampled_grades = dict(sampled_grades or {})
        self.grades_sampled = False
        self.default_judge = settings.checks.judge_model
        self.native = settings.checks.native_format
        self.max_reasks = settings.checks.max_reasks
        self.pricers_of = pricers_of
        if sampled_reasks:  # measured on the sample's schema jobs
            shares = measured_shares(sampled_reasks, self.max_reasks)
            self.reasks = ReaskPlan(0, self.max_reasks, "sample", None, shares, len(sampled_reasks))
        else:
            rate = settings.plan.expected_reask_rate
            self.reasks = ReaskPlan(
                0, self.max_reasks, "assumed", rate, assumed_shares(rate, self.max_reasks)
            )
        self.judges: dict[str, JudgePlan] = {}
        self.loads: list[Load] = []
        self.any = False

    def add(self, job: Job, model: str, input_tokens: int, expected_out: float) -> None:
        """The checks of `job`, answered by `model` from `input_tokens` with `expected_out`."""
        if job.output_schema is not None:
            self.any = True
            self._reasks(job, model, input_tokens, expected_out)
        judges = [s for s in specs_of(job.checks) if s.is_judge]
        if not judges:
            return
        self.any = True
        question = question_of(job.messages, job.system)
        quoted = quoted_tokens(expected_out) if self.simulated and job.output_schema is None else expected_out
        answer_tokens = min(quoted, QUOTED_TOKENS_AT_MOST)
        worst_answer = min(job.max_tokens, MAX_QUOTED_CHARS)  # an answer of non-ASCII characters
        for spec in judges:
            jm = judge_model(spec, self.default_judge)
            asked = judge_request(spec, jm, question, "")
            base = estimate_input_tokens(with_output_schema(asked, grade_schema(spec), native=self.native))
            tokens = round(base + answer_tokens)
            if jm in self.sampled_grades:
                grade, self.grades_sampled = self.sampled_grades[jm], True
            else:
                grade = grade_tokens(spec, self.native) if self.simulated else JUDGE_OUTPUT_TOKENS
            out = min(grade, JUDGE_MAX_TOKENS)
            pricer, dearest = self.pricers_of(jm)
            jp = self.judges.setdefault(jm, JudgePlan(jm))
            jp.calls += 1
            jp.input_tokens += tokens
            jp.expected_output_tokens += out
            jp.expected_usd += _usd(pricer, jm, tokens, out)
            jp.worst_usd += dearest.worst_case_usd(jm, base + worst_answer, JUDGE_MAX_TOKENS)
            self.loads.append(Load(jm, 1, tokens, out))

    def _reasks(self, job: Job, model: str, input_tokens: int, expected_out: float) -> None:
        r = self.reasks
        r.jobs += 1
        assert job.output_schema is not None
        message = reask_message(job.output_schema, TYPICAL_SCHEMA_ERROR)["content"]
        turn = text_tokens(message) + 2 * PER_MESSAGE_OVERHEAD  # the invalid answer's turn and this one
        pricer, dearest = self.pricers_of(model)
        calls = inp = out = 0.0
        for i, share in enumerate(r.reasked_at_least, start=1):
            calls += share
            inp += share * (input_tokens + i * (expected_out + turn))
            out += share * expected_out
            worst_in = round(input_tokens + i * (job.max_tokens + turn))
            r.worst_usd += dearest.worst_case_usd(model, worst_in, job.max_tokens)
        r.expected_calls += calls
        r.max_calls += r.max_reasks
        r.input_tokens += inp
        r.expected_output_tokens += out
        r.expected_usd += _usd(pricer, model, inp, out)
        if calls:
            self.loads.append(Load(model, calls, inp, out))

    def result(self) -> ChecksPlan | None:
        """The checks' plan, or None when no job has an output schema or a judge."""
        if not self.any:
            return None
        judges = sorted(self.judges.values(), key=lambda j: j.model)
        reasks = self.reasks if self.reasks.jobs else None
        expected = sum(j.expected_usd for j in judges) + (reasks.expected_usd if reasks else 0.0)
        worst = sum(j.worst_usd for j in judges) + (reasks.worst_usd if reasks else 0.0)
        source = "sample" if self.grades_sampled else "simulator" if self.simulated else "assumed"
        return ChecksPlan(judges, reasks, source, expected, worst, self.loads)


def _usd(pricer: Pricer, model: str, input_tokens: float, output_tokens: float) -> float:
    price = pricer.price(model)
    if price is None:
        return 0.0
    return (input_tokens * price.input + output_tokens * price.output) / 1_000_000


def render(checks: Mapping[str, Any] | None) -> list[str]:
    """The checks' lines of the plan (as `ChecksPlan.as_dict()` holds them)."""
    if not checks:
        return []
    lines = []
    for j in checks["judges"]:
        lines.append(
            f"  judges on {j['model']}: {j['calls']:,} call(s), {j['input_tokens']:,} input tokens,"
            f" ~{j['expected_output_tokens']:,.0f} output tokens ({_grade(checks, j)});"
            f" expected ${j['expected_usd']:.4f}, worst case ${j['worst_usd']:.4f}"
        )
    r = checks["reasks"]
    if r is not None:
        if r["source"] == "sample":
            why = f"as the sample's {r['sampled_jobs']} schema job(s) were re-asked"
        else:
            why = f"{r['invalid_share']:.0%} of answers assumed invalid: plan.expected_reask_rate"
        lines.append(
            f"  re-asks: {r['jobs']:,} job(s) with an output schema; ~{r['expected_calls']:,.1f} re-ask(s)"
            f" expected ({why}), at most {r['max_calls']:,} (checks.max_reasks {r['max_reasks']});"
            f" expected ${r['expected_usd']:.4f}, worst case ${r['worst_usd']:.4f}"
        )
    return lines


def _grade(checks: Mapping[str, Any], judge: Mapping[str, Any]) -> str:
    per = judge["expected_output_tokens"] / max(1, judge["calls"])
    if checks["judge_output"] == "simulator":
        return f"{per:.1f} per grade, as the embedded simulator fills it"
    if checks["judge_output"] == "sample":
        return f"{per:.1f} per grade, measured on the sample"
    return f"{per:.0f} per grade, assumed"


def sampled_grades(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The mean output tokens of the judges' grades per judge model, from a run's journal rows
    (each judge's `CheckResult.output_tokens`)."""
    seen: dict[str, list[int]] = {}
    for row in rows:
        checks = row.get("checks")
        results = checks.get("results") if isinstance(checks, dict) else None
        for result in results if isinstance(results, list) else ():
            if isinstance(result, dict) and result.get("kind") == "judge" and result.get("model"):
                tokens = result.get("output_tokens")
                if isinstance(tokens, int) and not isinstance(tokens, bool):
                    seen.setdefault(str(result["model"]), []).append(tokens)
    return {model: sum(counts) / len(counts) for model, counts in seen.items()}


def sampled_reasks(rows: Sequence[dict[str, Any]]) -> list[int]:
    """Re-asks per finished job with an output schema, from a run's journal rows (`job_row`)."""
    out = []
    for row in rows:
        job = row.get("job") or {}
        checks = row.get("checks")
        if job.get("output_schema") is None or not isinstance(checks, dict):
            continue
        out.append(int(checks.get("reasks") or 0))
    return out
