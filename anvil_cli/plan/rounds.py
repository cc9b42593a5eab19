"""`anvil plan --sample auto`: how big each round of the sample is, and when to stop. Pure: no
I/O, no clock (plan/autosample.py runs the rounds).

The precision of a cost forecast is the half-width of its p10-p90 range relative to its
middle: `(p90 - p10) / (p90 + p10)`. Its square splits in two: a floor that sampling cannot
move (the batch's answers vary independently of one another; `floor`) and the fit's own
error, which shrinks as 1/answers (the sd as 1/sqrt(answers)): `h(n)^2 = floor^2 + c / n`. From
the precision now (`h` at `n` answers) the answers a target needs follow; a round samples the
difference, at least `MIN_ROUND` (a fit from a few more answers moves little), at most
`GROWTH` x the answers so far (the spread of a few answers is itself uncertain: grow, look
again), never more than the batch has left, cut to what is left of the sample's budget at the
cost per answer seen so far. Sampling stops when the target is reached, when the batch is all
sampled, when the target is under the floor, or when not even a minimum round fits the budget.
(The jobs sampled are known, not forecast: the floor is the jobs not sampled yet, and only the
whole batch's answers take it to zero; plan/autosample.py says what that would cost.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from anvil_cli.plan.sample import MIN_PER_MODEL

FIRST_ROUND = 20  # the first round: what `--sample 20` samples (the same jobs, the same run)
MIN_ROUND = 10  # the fewest answers a later round samples (unless fewer are left)
GROWTH = 2.0  # a round samples at most this many times the answers so far

# why sampling stopped
REACHED = "precision"  # the target was reached
ALL_SAMPLED = "batch"  # every job of the batch was sampled
FLOOR = "floor"  # the target is under what any number of answers short of the whole batch reaches
BUDGET = "budget"  # not even a minimum round fits what is left of --sample-max-usd
INTERRUPTED = "interrupted"  # Ctrl-C (SIGINT) or SIGTERM: stopped with what was measured


def precision(p10: float, p90: float) -> float:
    """The p10-p90 half-width relative to its middle (0 for a point; inf for a range at 0)."""
    if p90 <= p10:
        return 0.0
    return (p90 - p10) / (p90 + p10) if p90 + p10 > 0 else math.inf


def answers_needed(n: int, now: float, floor: float, target: float) -> int | None:
    """Answers in all for precision `target`, with `now` at `n` answers and `floor` the part
    that no answers remove; None when the target is under the floor (never reached)."""
    if now <= target:
        return n
    if target <= floor:
        return None
    return max(n + 1, math.ceil(n * (now * now - floor * floor) / (target * target - floor * floor)))


def first_round(jobs: int, models: int) -> int:
    """The first round's size: `FIRST_ROUND`, or three answers per model if more."""
    return min(jobs, max(FIRST_ROUND, MIN_PER_MODEL * models))


@dataclass(frozen=True, slots=True)
class Step:
    """What the next round does: `size` more jobs, or stop (`stop`, why)."""

    size: int
    stop: str | None = None
    needed: int | None = None  # answers in all the target needs (None: not reachable)


def next_round(
    *,
    n: int,
    now: float,
    floor: float,
    target: float,
    jobs_left: int,
    budget_left_usd: float,
    usd_per_answer: float,
) -> Step:
    """The next round after `n` answers at precision `now` (see the module's docstring)."""
    needed = answers_needed(n, now, floor, target)
    if now <= target:
        return Step(0, REACHED, needed)
    if jobs_left <= 0:
        return Step(0, ALL_SAMPLED, needed)
    if needed is None:
        return Step(0, FLOOR, None)
    size = min(max(needed - n, MIN_ROUND), max(MIN_ROUND, math.floor(GROWTH * n)), jobs_left)
    if usd_per_answer > 0:
        size = min(size, math.floor(budget_left_usd / usd_per_answer))
    if size < min(MIN_ROUND, jobs_left, max(1, needed - n)):
        return Step(0, BUDGET, needed)
    return Step(size, None, needed)


def more_to_reach(needed: int | None, n: int, usd_per_answer: float) -> tuple[int, float] | None:
    """What reaching the target would take beyond `n` answers: (answers, $ at the cost per answer
    seen so far); None when no number of answers reaches it."""
    if needed is None:
        return None
    more = max(0, needed - n)
    return more, more * usd_per_answer
