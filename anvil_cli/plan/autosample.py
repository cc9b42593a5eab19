"""`anvil plan --sample auto`: sample the batch in rounds until the cost forecast is as precise
as asked, the sample's budget is spent, or the batch is all sampled (plan/rounds.py decides).

Each round is a sample run of its own (plan/sample.py: journaled, cached, under what is left of
`--sample-max-usd`), of jobs not sampled before (`choose_more`: as `choose` chooses, by model
and prompt length); every round's answers go into the fit, and the plan is made again from all
of them, the jobs sampled at their answers' known length (the batch's run takes them from the
cache). The first round is the jobs `--sample 20` samples, and the same command again chooses
the same rounds (the same answers, the same spread), so it resumes or reuses their runs: no
answer is paid twice. Each round's state goes to `say` (stderr); a Ctrl-C or SIGTERM (counted
by `signals`) ends the sampling with what was measured, marked as stopped early.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anvil_cli.config.settings import Settings
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.toolspec import split_tools
from anvil_cli.plan.estimate import Plan
from anvil_cli.plan.rounds import (
    ALL_SAMPLED,
    INTERRUPTED,
    REACHED,
    first_round,
    more_to_reach,
    next_round,
    precision,
)
from anvil_cli.plan.sample import SampleOutcome, choose, choose_more, read_outcome, run_sample
from anvil_cli.policy.routing import model_for

if TYPE_CHECKING:
    from anvil_cli.engine.process.signals import SignalState

CAP_NOTE = "the sample stopped at its cap"  # run_sample's note; said once for all rounds here


@dataclass
class AutoSample:
    """What `--sample auto` did, for the plan's `sample` section and its last lines."""

    target: float
    reached: float = 0.0
    floor: float = 0.0
    stop_reason: str = ""
    rounds: list[dict[str, Any]] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    more: tuple[int, float] | None = None  # answers and $ the target would still take
    whole_batch: bool = False  # ... the rest of the batch: the target is under the floor

    @property
    def stopped_early(self) -> bool:
        return self.stop_reason == INTERRUPTED

    def as_dict(self) -> dict[str, Any]:
        more = None
        if self.more is not None:
            more = {"answers": self.more[0], "usd": round(self.more[1], 6), "whole_batch": self.whole_batch}
        return {
            "mode": "auto",
            "run_ids": self.run_ids,
            "rounds": self.rounds,
            "precision": {
                "target": self.target,
                "reached": round(self.reached, 6),
                "floor": round(self.floor, 6),
                "met": self.stop_reason == REACHED,
            },
            "more": more,
            "stopped_early": self.stopped_early,
        }


def plan_precision(plan: Plan) -> tuple[float, float]:
    """(the plan's cost precision, its floor: the precision with the fit's own error gone,
    what no number of answers improves on)."""
    c = plan.cost_range_usd
    now = precision(c["p10"], c["p90"])
    if plan.cost_total is None:
        return now, 0.0
    low = plan.cost_total.without_fit_error().range()
    return now, min(now, precision(low.p10, low.p90))


def sample_auto(
    settings: Settings,
    batch: Path,
    jobs: Sequence[Job],
    *,
    target: float,
    cap_usd: float,
    simulate: bool,
    allow_tools: bool,
    plan_of: Callable[[SampleOutcome], Plan],
    say: Callable[[str], None],
    signals: SignalState,
) -> tuple[SampleOutcome, Plan, AutoSample]:
    """Sample in rounds (see the module's docstring); the outcome of all rounds, the plan from
    their answers, and what the rounds did."""
    models = len({model_for(j, settings.routing) for j in jobs})
    chosen = choose(jobs, first_round(len(jobs), models), settings)
    auto = AutoSample(target)
    taken: set[str] = set()
    exact: set[str] = set()  # jobs sampled as the batch runs them (a tool job without its tools is not)
    notes: list[str] = []
    while True:
        left = cap_usd - (auto.rounds[-1]["spent_usd"] if auto.rounds else 0.0)
        say(f"sample round {len(auto.rounds) + 1}: {len(chosen)} job(s), at most ${left:.4f} ...")
        got = run_sample(
            settings,
            batch,
            chosen,
            simulate=simulate,
            max_usd=max(0.0, left),
            allow_tools=allow_tools,
            signals=signals,
        )
        auto.run_ids.append(got.run_id)
        taken.update(j.id for j in chosen)
        notes += [n for n in got.notes if n not in notes and not n.startswith(CAP_NOTE)]
        exact.update(j.id for j in chosen if allow_tools or not split_tools(j.params)[1])
        outcome = read_outcome(settings, auto.run_ids, len(taken), cap_usd, None, notes)
        outcome = dataclasses.replace(
            outcome, answered={k: v for k, v in outcome.answered.items() if k in exact}
        )
        plan = plan_of(outcome)
        auto.reached, auto.floor = plan_precision(plan)
        n, spent = len(outcome.answers), outcome.spent_usd
        per_answer = spent / n if n else 0.0
        step = next_round(
            n=n,
            now=auto.reached,
            floor=auto.floor,
            target=target,
            jobs_left=len(jobs) - len(taken),
            budget_left_usd=cap_usd - spent,
            usd_per_answer=per_answer,
        )
        auto.rounds.append(
            {
                "jobs": len(chosen),
                "answers": n,
                "spent_usd": round(spent, 6),
                "precision": round(auto.reached, 6),
            }
        )
        say(
            f"sample round {len(auto.rounds)}: {n} answer(s) in all, ${spent:.4f}; cost"
            f" +/-{auto.reached:.1%} (target +/-{target:.1%})"
            + (
                f"; next: {step.size} more"
                if step.stop is None and not (signals.count or got.stop_reason)
                else ""
            )
        )
        stop = step.stop if step.stop == REACHED else (got.stop_reason or step.stop)
        stop = INTERRUPTED if signals.count else stop
        if stop is None:
            chosen = choose_more(jobs, step.size, settings, taken)
            if chosen:
                continue
            stop = ALL_SAMPLED
        auto.stop_reason = stop
        if stop != REACHED and stop != ALL_SAMPLED:
            auto.more = more_to_reach(step.needed, n, per_answer)
            left = len(jobs) - len(taken)
            if left > 0 and (auto.more is None or auto.more[0] >= left):  # only the rest of the batch
                auto.more, auto.whole_batch = (left, left * per_answer), True
            elif left <= 0:
                auto.more = None
        if got.stop_reason == "budget":
            notes.append(
                f"the sample stopped at its cap of ${cap_usd:.2f} (--sample-max-usd): fewer answers to fit"
            )
        final = dataclasses.replace(outcome, stop_reason=stop, notes=notes)
        return final, plan, auto


def auto_lines(outcome: SampleOutcome, auto: AutoSample) -> list[str]:
    """The plan's closing lines about the sample: what it cost, the precision reached, and what
    more the target would take."""
    rounds = len(auto.rounds)
    lines = [
        f"sample: {outcome.jobs} job(s) in {rounds} round(s), {len(outcome.answers)} answer(s) for"
        f" ${outcome.spent_usd:.4f} (cap ${outcome.cap_usd:.2f});"
        " their answers are cached for the batch's run"
    ]
    reached = f"precision: cost +/-{auto.reached:.1%} (the p10-p90 half-width over its middle)"
    if auto.stop_reason == REACHED:
        lines.append(f"{reached}: within the target of +/-{auto.target:.1%}")
        return lines
    why = {
        "budget": "--sample-max-usd is spent, or cannot hold another call's worst case",
        ALL_SAMPLED: "every job of the batch was sampled",
        "floor": "the batch's answers vary too much on their own",
        INTERRUPTED: "interrupted",
    }.get(auto.stop_reason, f"the sample run stopped ({auto.stop_reason})")
    lines.append(f"{reached}: the target of +/-{auto.target:.1%} was not reached ({why})")
    if auto.stopped_early:
        lines.append(f"stopped early: this plan is from the {len(outcome.answers)} answer(s) measured so far")
    if auto.whole_batch:
        lines.append(
            f"short of the whole batch no number of answers reaches +/-{auto.target:.1%}: the"
            f" batch's own spread keeps the range at +/-{auto.floor:.1%} or more"
        )
    if auto.more is not None:
        answers, usd = auto.more
        lines.append(
            f"reaching +/-{auto.target:.1%} would take ~{answers:,} more answer(s), ~${usd:.4f} more"
            f" (--sample-max-usd {math.ceil((outcome.spent_usd + usd) * 100) / 100:.2f} in all)"
        )
    return lines
