"""One forecast for `anvil plan`, the live projection and `GET /status`: fit the answers
observed (output tokens against prompt length, latency against output length, per model), then
predict a total with a range.

The fit is least squares, `output ~ a + b x input` (b only when prompt lengths vary enough and
the slope stands clear of the noise), with the spread of answers around it as a coefficient of
variation. A total over many jobs is a sum of independent answers plus the error of the fit
itself, which moves every job the same way: variance = sum of each job's variance + (total x
cv / sqrt(n))^2, read as a normal range (p10-p90). Where nothing was observed, the range is the
honest bounds (no output to every call at `max_tokens`) rather than a made-up spread.

Pure: no I/O, no clock. `anvil_cli.plan.estimate` and `anvil_cli.snapshot.build` use it; `history_answers`
in `anvil_cli.engine.journal.history` reads observed answers from the journal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

Z90: Final = 1.2815515655446004  # the normal distribution's 90th percentile: p10-p90 = mean -/+ Z90 sd
MIN_ANSWERS: Final = 3  # fewer answers of a model than this fit nothing
MIN_SLOPE_SPREAD: Final = 0.25  # prompt lengths must vary this much (cv) before a slope is fitted
MIN_SLOPE_ANSWERS: Final = 6  # and there must be this many answers
SLOPE_T: Final = 3.0  # a slope is kept only this many standard errors away from zero (not noise)


@dataclass(frozen=True, slots=True)
class Answer:
    """One observed answer: what was asked and what came back."""

    model: str
    input_tokens: int  # the whole prompt (cached tokens included)
    output_tokens: int
    max_tokens: int
    latency_s: float | None = None


@dataclass(frozen=True, slots=True)
class Line:
    """y ~ intercept + slope x, and the spread around it (coefficient of variation)."""

    intercept: float
    slope: float
    cv: float

    def at(self, x: float) -> float:
        return self.intercept + self.slope * x


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> Line:
    """Least squares of `ys` on `xs`; flat (the mean) unless the xs vary enough to tell a slope
    and the slope helps. Needs at least one point."""
    n = len(ys)
    mean_y = sum(ys) / n
    mean_x = sum(xs) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    flat = math.sqrt(sum((y - mean_y) ** 2 for y in ys) / max(1, n - 1))
    if n < MIN_SLOPE_ANSWERS or mean_x <= 0 or math.sqrt(sxx / n) / mean_x < MIN_SLOPE_SPREAD:
        return Line(mean_y, 0.0, flat / mean_y if mean_y > 0 else 0.0)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = mean_y - slope * mean_x
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    sd = math.sqrt(residual / (n - 2))
    significant = sd == 0 or abs(slope) / (sd / math.sqrt(sxx)) >= SLOPE_T
    if not significant or any(intercept + slope * x <= 0 for x in xs):  # noise, or a line below zero
        return Line(mean_y, 0.0, flat / mean_y if mean_y > 0 else 0.0)
    return Line(intercept, slope, sd / mean_y if mean_y > 0 else 0.0)


@dataclass(frozen=True, slots=True)
class ModelFit:
    """What the answers of one model say about its next ones."""

    model: str
    answers: int
    output: Line  # output tokens against input tokens
    latency: Line | None  # seconds against output tokens (None: no latency observed)
    source: str  # "sample", "history" or "this run"

    def output_tokens(self, input_tokens: float, max_tokens: int) -> float:
        """Expected output tokens of one call (never above its `max_tokens`)."""
        return min(float(max_tokens), max(1.0, self.output.at(input_tokens)))

    def latency_s(self, output_tokens: float) -> float | None:
        return None if self.latency is None else max(0.0, self.latency.at(output_tokens))

    def describe(self) -> str:
        shape = (
            f"{self.output.intercept:.0f} + {self.output.slope:.3f} x input"
            if self.output.slope
            else (f"{self.output.intercept:.0f}")
        )
        return f"{shape} tokens (+/-{self.output.cv:.0%}), from {self.answers} {self.source} answer(s)"


def fit_models(answers: Iterable[Answer], source: str) -> dict[str, ModelFit]:
    """A fit per model that has at least `MIN_ANSWERS` answers."""
    by_model: dict[str, list[Answer]] = {}
    for a in answers:
        by_model.setdefault(a.model, []).append(a)
    fits: dict[str, ModelFit] = {}
    for model, group in by_model.items():
        if len(group) < MIN_ANSWERS:
            continue
        output = fit_line([a.input_tokens for a in group], [a.output_tokens for a in group])
        timed = [a for a in group if a.latency_s is not None]
        latency = None
        if len(timed) >= MIN_ANSWERS:
            latency = fit_line([a.output_tokens for a in timed], [float(a.latency_s or 0.0) for a in timed])
        fits[model] = ModelFit(model, len(group), output, latency, source)
    return fits


@dataclass(frozen=True, slots=True)
class Range:
    """A forecast: the expected value and the p10-p90 range around it."""

    p10: float
    expected: float
    p90: float

    def scaled(self, factor: float) -> Range:
        return Range(self.p10 * factor, self.expected * factor, self.p90 * factor)

    def as_dict(self, digits: int = 6) -> dict[str, float]:
        return {
            "p10": round(self.p10, digits),
            "expected": round(self.expected, digits),
            "p90": round(self.p90, digits),
        }


@dataclass
class Total:
    """A sum of independent per-job forecasts, built up job by job."""

    expected: float = 0.0
    variance: float = 0.0  # of the answers around the fit
    shared: float = 0.0  # the part that moves with the fit's own error (sum of expected x cv/sqrt(n))
    low: float = 0.0  # bounds where nothing was observed: added to the range as they are
    high: float = 0.0

    def add_fitted(self, expected: float, cv: float, answers: int) -> None:
        self.expected += expected
        self.variance += (expected * cv) ** 2
        self.shared += expected * cv / math.sqrt(max(1, answers))

    def add_bounded(self, expected: float, low: float, high: float) -> None:
        """A job with no observed answers: its expected value by rule, within [low, high]."""
        self.expected += expected
        self.low += low - expected
        self.high += high - expected

    def range(self) -> Range:
        sd = math.sqrt(self.variance + self.shared**2)
        return Range(
            max(0.0, self.expected - Z90 * sd + self.low), self.expected, self.expected + Z90 * sd + self.high
        )


@dataclass
class RunningCost:
    """Per-job cost of the answers so far (Welford's running mean and variance)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, cost_usd: float) -> None:
        self.n += 1
        delta = cost_usd - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (cost_usd - self.mean)

    @property
    def cv(self) -> float:
        if self.n < 2 or self.mean <= 0:
            return 0.0
        return math.sqrt(self.m2 / (self.n - 1)) / self.mean

    def project(self, so_far_usd: float, remaining_jobs: int) -> Range | None:
        """The run's total: what it spent plus the remaining jobs at the observed per-job cost
        (the same range model as `anvil plan`); None before the first answer."""
        if self.n == 0:
            return None
        spread = self.mean * self.cv
        rest = Total(
            expected=self.mean * remaining_jobs,
            variance=remaining_jobs * spread**2,  # each job's own spread
            shared=remaining_jobs * spread / math.sqrt(self.n),  # the error of the mean itself
        )
        r = rest.range()
        return Range(so_far_usd + r.p10, so_far_usd + r.expected, so_far_usd + r.p90)
