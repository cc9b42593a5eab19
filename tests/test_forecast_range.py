"""The calibrated p10-p90 range of a forecast fitted to measured answers (anvil_cli.policy.forecast):
Student's t for a spread known from few answers, a wider upper side for answers with a long right
tail, and the normal range unchanged where the spread is given. Pure logic: exact numbers."""

from __future__ import annotations

import math

import pytest

from anvil_cli.config.settings import Settings
from anvil_cli.jobs.job import Job
from anvil_cli.plan.estimate import OutputModel, make_plan
from anvil_cli.policy.forecast import Z90, Answer, Spread, Total, fit_models, fit_spread, skewness, t90


def test_t90_is_students_t_and_the_normal_for_many_degrees_of_freedom() -> None:
    assert t90(1) == pytest.approx(math.tan(0.4 * math.pi))  # Cauchy: tan(pi (p - 1/2))
    assert t90(2) == pytest.approx(0.8 / math.sqrt(2 * 0.9 * 0.1))  # (2p - 1) / sqrt(2p(1 - p))
    assert t90(4) == pytest.approx(1.533206, abs=1e-6)  # the printed tables' figures
    assert t90(19) == pytest.approx(1.327728, abs=1e-6)
    assert t90(120) == pytest.approx(1.288646, abs=1e-6)
    assert t90(5000) == Z90


def test_skewness_is_the_adjusted_sample_skewness() -> None:
    assert skewness([1.0, 1.0, 4.0]) == pytest.approx(math.sqrt(3))  # m3 = 2, m2 = 2, x sqrt(6)/1
    assert skewness([1.0, 2.0, 3.0]) == 0.0
    assert skewness([5.0, 5.0, 5.0]) == skewness([1.0, 9.0]) == 0.0  # none differ; too few


def test_a_symmetric_spread_known_from_many_answers_gives_the_normal_range() -> None:
    given, measured = Total(), Total()
    for _ in range(10_000):
        given.add_fitted(1.0, 0.5, 25)
        measured.add_fitted(1.0, 0.5, 25, Spread(df=10**6, skew=0.0))
    assert measured.range().as_dict() == pytest.approx(given.range().as_dict())
    own, shared = math.sqrt(10_000) * 0.5, 10_000 * 0.5 / 5
    assert measured.range().p90 - 10_000 == pytest.approx(Z90 * math.hypot(own, shared))


def test_a_spread_from_few_answers_widens_the_range_by_students_t() -> None:
    def half_width(answers: int) -> float:
        total = Total()
        for _ in range(300):
            total.add_fitted(2.0, 0.4, answers, Spread(df=answers - 1))
        r = total.range()
        assert r.p90 - r.expected == pytest.approx(r.expected - r.p10)  # no skew: symmetric
        return r.p90 - r.expected

    own = math.sqrt(300) * 2.0 * 0.4
    assert half_width(5) == pytest.approx(t90(4) * math.hypot(own, 300 * 2.0 * 0.4 / math.sqrt(5)))
    assert half_width(100) == pytest.approx(t90(99) * math.hypot(own, 300 * 2.0 * 0.4 / 10))
    # the same spread from 5 answers: wider than the normal range would say (1.533 / 1.282)
    normal = Total()
    for _ in range(300):
        normal.add_fitted(2.0, 0.4, 5)
    assert half_width(5) / (normal.range().p90 - 600) == pytest.approx(1.533206 / Z90, abs=1e-6)


def test_a_long_right_tail_widens_the_upper_side_only() -> None:
    total = Total()
    for _ in range(100):
        total.add_fitted(1.0, 1.0, 16, Spread(df=15, skew=2.0))
    r = total.range()
    t = t90(15)
    error = 100 * 1.0 / 4  # the fit's error: 100 jobs x cv / sqrt(16)
    own = t * math.sqrt(100)
    widening = 2.0 * (2 * t * t + 1) / (6 * 4)  # Hall's term: skew (2 t^2 + 1) / (6 sqrt(n))
    assert r.p90 - 100 == pytest.approx(math.hypot(own, error * (t + widening)))
    assert 100 - r.p10 == pytest.approx(math.hypot(own, error * t))
    left = Total()
    for _ in range(100):
        left.add_fitted(1.0, 0.2, 16, Spread(df=15, skew=-2.0))  # a long left tail: the lower side
    lr = left.range()
    assert lr.expected - lr.p10 > lr.p90 - lr.expected > 0


def test_fits_say_how_sure_they_are_of_their_spread() -> None:
    flat_line, flat = fit_spread([100.0] * 5, [10.0, 10.0, 10.0, 10.0, 60.0])
    assert flat_line.slope == 0.0 and flat == Spread(df=4, skew=pytest.approx(skewness([0, 0, 0, 0, 50.0])))
    xs = [100.0 * i for i in range(1, 21)]
    ys = [50 + 0.5 * x + (30.0 if i % 5 == 0 else -7.5) for i, x in enumerate(xs)]
    line, spread = fit_spread(xs, ys)
    assert line.slope == pytest.approx(0.5, abs=0.01) and spread.df == 18  # a line: two parameters
    assert spread.skew > 1  # the residuals' rare large ones
    answers = [Answer("claude-haiku-4-5", 100, 110 + 10 * (i % 3), 4096) for i in range(9)]
    (fit,) = fit_models(answers, "sample").values()
    assert fit.spread == Spread(df=8, skew=0.0)


def test_a_plan_from_a_skewed_sample_reaches_further_up_than_down() -> None:
    jobs = [
        Job(
            id=f"j{i}",
            seq=i,
            messages=[{"role": "user", "content": "x" * 400}],
            model="claude-haiku-4-5",
            max_tokens=4096,
        )
        for i in range(300)
    ]
    lengths = [60, 70, 75, 80, 85, 90, 95, 100, 110, 120, 130, 150, 170, 200, 250, 300, 400, 600, 900, 1500]
    answers = [Answer("claude-haiku-4-5", 100, n, 4096) for n in lengths]
    fits = fit_models(answers, "sample")
    plan = make_plan(jobs, Settings(), None, OutputModel(latency_s=5.0), fits)
    c = plan.cost_range_usd
    assert c["p90"] - c["expected"] > 1.2 * (c["expected"] - c["p10"])
    # the middle is the fit's, as before: only the range moved
    mean = sum(lengths) / len(lengths)
    assert plan.models[0].expected_output_tokens == pytest.approx(300 * mean)


def test_without_the_fit_error_only_the_answers_own_spread_is_left() -> None:
    total = Total()
    for _ in range(100):
        total.add_fitted(1.0, 1.0, 16, Spread(df=15, skew=2.0))
        total.add_fitted(1.0, 0.5, 25)  # a given spread, alike
    r = total.without_fit_error().range()
    own = math.sqrt(100 * t90(15) ** 2 + Z90**2 * 100 * 0.5**2)
    assert r.p90 - r.expected == pytest.approx(own) and r.expected - r.p10 == pytest.approx(own)


def test_the_fits_of_different_models_err_independently() -> None:
    """One model's fit errs for all its jobs at once (summed); two models were fitted from
    different answers, so their errors add in quadrature: a mixed batch's range is narrower than
    if every model's fit moved together, and equal to it for one model."""
    together, apart = Total(), Total()
    for model in ("haiku", "opus"):
        for _ in range(100):
            together.add_fitted(1.0, 0.5, 25, Spread(df=24))
            apart.add_fitted(1.0, 0.5, 25, Spread(df=24), group=model)
    t = t90(24)
    own = 200 * (0.5 * t) ** 2
    per_model = 100 * 0.5 / 5 * t
    assert apart.range().p90 - 200 == pytest.approx(math.sqrt(own + 2 * per_model**2))
    assert together.range().p90 - 200 == pytest.approx(math.sqrt(own + (2 * per_model) ** 2))
    single = Total()
    for _ in range(100):
        single.add_fitted(1.0, 0.5, 25, Spread(df=24), group="haiku")
    assert single.range().p90 - 100 == pytest.approx(math.sqrt(100 * (0.5 * t) ** 2 + per_model**2))
