"""One forecast for `anvil plan`, the live projection and `GET /status`: fit the answers
observed (output tokens against prompt length, latency against output length, per model), then
predict a total with a range.

The fit is least squares, `output ~ a + b x input` (b only when prompt lengths vary enough and
the slope stands clear of the noise), with the spread of answers around it as a coefficient of
variation. A total over many jobs is a sum of independent answers plus the error of the fit
itself, which moves every job the same way: variance = sum of each job's variance + (total x
cv / sqrt(n))^2. Where nothing was observed, the range is the honest bounds (no output to every
call at `max_tokens`) rather than a made-up spread.

A spread that is given (a known distribution) is read as a normal range (p10-p90 = -/+ 1.28 sd).
A spread measured from n answers (`Spread`, what `anvil plan` passes for a sample or history) is
itself uncertain, and answer lengths are skewed to the right: its range is calibrated (benchmark
12, docs/benchmarks.md) by two corrections, neither tuned to a benchmark:

* Student's t with n - k degrees of freedom (k = 1 for a mean, 2 for a line) in place of the
  normal's 1.28: the sd of 20 answers is itself known only to about +/-16%.
* Skew (Hall 1992, the Edgeworth expansion of the studentized mean): when answers are skewed by
  g, the mean of n of them errs low more often than high (a sample that missed the long tail
  also shows a small sd), and the t interval's upper side falls short by
  g (2 t^2 + 1) / (6 sqrt(n)) standard errors. That side is widened by it; the other side is
  not narrowed (a skew measured from few answers is too uncertain to buy a narrower range).

Pure: no I/O, no clock. `anvil_cli.plan.estimate` and `anvil_cli.snapshot.build` use it; `history_answers`
in `anvil_cli.engine.journal.history` reads observed answers from the journal.
"""

from __future__ import annotations

import dataclasses
import functools
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


@dataclass(frozen=True, slots=True)
class Spread:
    """How sure the fit is of its own spread: what widens the range beyond the normal one."""

    df: int  # degrees of freedom of the cv: answers less the parameters fitted (1 or 2)
    skew: float = 0.0  # of the answers around the fit (adjusted Fisher-Pearson), > 0: a long right tail


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> Line:
    """Least squares of `ys` on `xs`; flat (the mean) unless the xs vary enough to tell a slope
    and the slope helps. Needs at least one point."""
    return _fit(xs, ys)[0]


def fit_spread(xs: Sequence[float], ys: Sequence[float]) -> tuple[Line, Spread]:
    """`fit_line`, and how sure it is of its spread: the degrees of freedom left and the skew of
    the residuals."""
    line, residuals = _fit(xs, ys)
    return line, Spread(max(1, len(ys) - (2 if line.slope else 1)), skewness(residuals))


def skewness(values: Sequence[float]) -> float:
    """The sample skewness G1 (adjusted Fisher-Pearson, as spreadsheets compute it); 0 for fewer
    than three values or none that differ."""
    n = len(values)
    if n < 3:
        return 0.0
    mean = sum(values) / n
    m2 = sum((v - mean) ** 2 for v in values) / n
    if m2 <= 0:
        return 0.0
    m3 = sum((v - mean) ** 3 for v in values) / n
    return float(m3 / math.pow(m2, 1.5) * math.sqrt(n * (n - 1)) / (n - 2))


def _fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[Line, list[float]]:
    """The fit and its residuals."""
    n = len(ys)
    mean_y = sum(ys) / n
    mean_x = sum(xs) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    flat = math.sqrt(sum((y - mean_y) ** 2 for y in ys) / max(1, n - 1))
    flat_fit = Line(mean_y, 0.0, flat / mean_y if mean_y > 0 else 0.0), [y - mean_y for y in ys]
    if n < MIN_SLOPE_ANSWERS or mean_x <= 0 or math.sqrt(sxx / n) / mean_x < MIN_SLOPE_SPREAD:
        return flat_fit
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = mean_y - slope * mean_x
    residuals = [y - (intercept + slope * x) for x, y in zip(xs, ys, strict=True)]
    sd = math.sqrt(sum(r * r for r in residuals) / (n - 2))
    significant = sd == 0 or abs(slope) / (sd / math.sqrt(sxx)) >= SLOPE_T
    if not significant or any(intercept + slope * x <= 0 for x in xs):  # noise, or a line below zero
        return flat_fit
    return Line(intercept, slope, sd / mean_y if mean_y > 0 else 0.0), residuals


@dataclass(frozen=True, slots=True)
class ModelFit:
    """What the answers of one model say about its next ones."""

    model: str
    answers: int
    output: Line  # output tokens against input tokens
    latency: Line | None  # seconds against output tokens (None: no latency observed)
    source: str  # "sample", "history" or "this run"
    spread: Spread | None = None  # how sure the output fit is of its spread (None: as sure as of a given one)

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
        output, spread = fit_spread([a.input_tokens for a in group], [a.output_tokens for a in group])
        timed = [a for a in group if a.latency_s is not None]
        latency = None
        if len(timed) >= MIN_ANSWERS:
            latency = fit_line([a.output_tokens for a in timed], [float(a.latency_s or 0.0) for a in timed])
        fits[model] = ModelFit(model, len(group), output, latency, source, spread)
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
    """A sum of independent per-job forecasts, built up job by job.

    Jobs whose spread is given add to `variance` and `shared` (a normal range); jobs whose
    spread was measured (`Spread`) add to the `measured*` sums, already in p90 units (t
    quantiles, the skew's widening). The fit errors of the jobs of one `group` (a model: the
    same answers made the fit of every job of it) move together and are summed; different
    groups' fits come from different answers, so their errors add in quadrature."""

    expected: float = 0.0
    variance: float = 0.0  # of the answers around the fit
    low: float = 0.0  # bounds where nothing was observed: added to the range as they are
    high: float = 0.0
    measured: float = 0.0  # sum of (expected x cv x t)^2: measured answers' own spread, at p90
    # per group, the fit's own error at p90, upwards and downwards: sum of expected x cv/sqrt(n)
    # x z (a given spread) or x (t + the skew's widening) (a measured one)
    fit_up: dict[str, float] = dataclasses.field(default_factory=dict)
    fit_down: dict[str, float] = dataclasses.field(default_factory=dict)

    def add_fitted(
        self, expected: float, cv: float, answers: int, spread: Spread | None = None, group: str = ""
    ) -> None:
        """A job forecast by a fit to `answers` answers spread by `cv`; `spread`: how sure the
        fit is of that spread (None: it is given, a normal range); `group`: which fit (a model)."""
        self.expected += expected
        n = max(1, answers)
        error = expected * cv / math.sqrt(n)
        if spread is None:
            self.variance += (expected * cv) ** 2
            up = down = Z90 * error
        else:
            t = t90(spread.df)
            widening = (2 * t * t + 1) / (6 * math.sqrt(n))  # per unit of skew, in standard errors
            self.measured += (expected * cv * t) ** 2
            up = error * (t + max(0.0, spread.skew) * widening)
            down = error * (t + max(0.0, -spread.skew) * widening)
        self.fit_up[group] = self.fit_up.get(group, 0.0) + up
        self.fit_down[group] = self.fit_down.get(group, 0.0) + down

    def add_bounded(self, expected: float, low: float, high: float) -> None:
        """A job with no observed answers: its expected value by rule, within [low, high]."""
        self.expected += expected
        self.low += low - expected
        self.high += high - expected

    def without_fit_error(self) -> Total:
        """This total as if the fits were exact (their own error gone, the answers' spread
        kept): the precision no number of answers improves on."""
        return dataclasses.replace(self, fit_up={}, fit_down={})

    def range(self) -> Range:
        own = Z90 * Z90 * self.variance + self.measured
        up = math.sqrt(own + sum(e * e for e in self.fit_up.values()))
        down = math.sqrt(own + sum(e * e for e in self.fit_down.values()))
        return Range(max(0.0, self.expected - down + self.low), self.expected, self.expected + up + self.high)


T_EXACT_DF: Final = 1000  # beyond this many degrees of freedom, t's p90 is the normal's to 0.1%


@functools.lru_cache(maxsize=256)
def t90(df: int) -> float:
    """The 90th percentile of Student's t with `df` degrees of freedom (the normal's beyond
    `T_EXACT_DF`): the CDF of integer df in closed form (Abramowitz & Stegun 26.7.3-4), solved
    by bisection."""
    if df > T_EXACT_DF:
        return Z90
    low, high = Z90, 3.1  # t90 falls from 3.078 (df 1) towards 1.2816
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_two_sided(mid, df) < 0.8 else (low, mid)
    return (low + high) / 2


def _t_two_sided(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer `df` >= 1."""
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:  # sin(theta) (1 + 1/2 c^2 + 1.3/2.4 c^4 + ... up to c^(df-2))
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return s * total
    if df == 1:
        return 2 * theta / math.pi
    c = math.cos(theta)  # 2/pi (theta + sin cos (1 + 2/3 c^2 + 2.4/3.5 c^4 + ... up to c^(df-3)))
    term, total = 1.0, 1.0
    for k in range(1, (df - 1) // 2):
        term *= c2 * (2 * k) / (2 * k + 1)
        total += term
    return 2 / math.pi * (theta + s * c * total)


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
        )
        mean_error = Z90 * remaining_jobs * spread / math.sqrt(self.n)  # the error of the mean itself
        rest.fit_up[""] = rest.fit_down[""] = mean_error
        r = rest.range()
        return Range(so_far_usd + r.p10, so_far_usd + r.expected, so_far_usd + r.p90)
