"""The forecast: fits of output length (and latency), totals with a p10-p90 range, the live
projection, and the sample's choice of jobs. Pure logic: no I/O, no clock."""

from __future__ import annotations

import math
import random

import pytest

from anvil_cli.config.settings import Settings
from anvil_cli.jobs.job import Job
from anvil_cli.plan.estimate import OutputModel, make_plan
from anvil_cli.plan.sample import choose
from anvil_cli.policy.forecast import Answer, RunningCost, Total, fit_line, fit_models


def test_a_clear_slope_is_fitted_and_noise_is_not() -> None:
    xs = [100.0 * i for i in range(1, 21)]
    line = fit_line(xs, [50 + 0.5 * x for x in xs])
    assert (line.intercept, line.slope, line.cv) == pytest.approx((50.0, 0.5, 0.0))
    rng = random.Random(3)
    noise = [rng.gauss(120, 30) for _ in xs]  # output that does not depend on the prompt
    flat = fit_line(xs, noise)
    assert flat.slope == 0.0 and flat.intercept == pytest.approx(sum(noise) / len(noise))
    assert flat.cv == pytest.approx(_sd(noise) / flat.intercept)


def test_too_few_or_too_alike_prompts_give_a_flat_fit() -> None:
    assert fit_line([10.0, 20.0, 30.0], [1.0, 2.0, 3.0]).slope == 0.0  # under six answers
    assert fit_line([100.0, 101.0] * 5, [5.0, 500.0] * 5).slope == 0.0  # prompts barely differ


def test_fits_are_per_model_need_three_answers_and_cap_at_max_tokens() -> None:
    answers = [Answer("claude-haiku-4-5", 100, 110, 4096, 0.5 + 0.01 * 110) for _ in range(5)]
    answers += [Answer("claude-opus-4-8", 100, 900, 1000, 9.0)] * 2
    fits = fit_models(answers, "history")
    assert list(fits) == ["claude-haiku-4-5"]
    fit = fits["claude-haiku-4-5"]
    assert fit.output_tokens(100, 4096) == 110 and fit.output_tokens(100, 64) == 64
    assert fit.latency_s(110) == pytest.approx(1.6)
    assert "from 5 history answer(s)" in fit.describe()


def test_a_total_is_exact_when_observed_answers_do_not_vary_and_bounded_when_none_were() -> None:
    total = Total()
    total.add_fitted(2.0, 0.0, 10)
    total.add_bounded(3.0, 1.0, 7.0)
    r = total.range()
    assert (r.p10, r.expected, r.p90) == (pytest.approx(0.0 + 2.0 + 1.0), 5.0, pytest.approx(2.0 + 7.0))


def test_the_range_of_many_jobs_narrows_but_keeps_the_error_of_the_fit() -> None:
    total = Total()
    for _ in range(10_000):
        total.add_fitted(1.0, 0.5, 25)  # each job +/-50%, the fit from 25 answers
    r = total.range()
    own = math.sqrt(10_000) * 0.5  # independent answers: 50 over 10,000
    shared = 10_000 * 0.5 / 5  # the mean itself is known to +/-10%: 1,000
    assert r.p90 - r.expected == pytest.approx(1.2815515 * math.hypot(own, shared))


def test_the_live_projection_uses_the_same_range_model() -> None:
    running = RunningCost()
    assert running.project(0.0, 100) is None
    for cost in (0.01, 0.03) * 10:
        running.add(cost)
    projected = running.project(so_far_usd=0.4, remaining_jobs=80)
    assert projected is not None
    assert projected.expected == pytest.approx(0.4 + 80 * 0.02)
    direct = Total()  # 80 jobs forecast from the 20 answers as a plan forecasts them
    for _ in range(80):
        direct.add_fitted(0.02, running.cv, 20)
    assert projected.p90 - projected.expected == pytest.approx(direct.range().p90 - 1.6)


def test_plan_with_fits_forecasts_from_them_and_says_so() -> None:
    jobs = [_job(i, "claude-haiku-4-5", 400 + 40 * i, 4096) for i in range(50)]
    answers = [Answer("claude-haiku-4-5", 100 + 10 * i, 110, 4096, 0.8) for i in range(30)]
    plan = make_plan(jobs, Settings(), None, OutputModel(latency_s=5.0), fit_models(answers, "sample"))
    (m,) = plan.models
    assert m.output_source == "sample" and m.expected_output_tokens == pytest.approx(50 * 110)
    assert plan.method == "sample" and plan.assumed_latency_s == pytest.approx(0.8)
    c = plan.cost_range_usd
    assert c["p10"] == c["expected"] == c["p90"] == pytest.approx(plan.expected_usd)  # answers did not vary
    ruled = make_plan(jobs, Settings(), None, OutputModel(latency_s=5.0))
    assert ruled.method == "rule" and ruled.expected_usd > 10 * plan.expected_usd  # half of 4,096 each
    assert ruled.cost_range_usd["p90"] == pytest.approx(ruled.worst_usd, rel=0.05)  # honest bounds


def test_the_sample_covers_every_model_and_the_range_of_prompt_lengths() -> None:
    jobs = [_job(i, "claude-haiku-4-5", 10 * (i + 1), 100) for i in range(90)]
    jobs += [_job(90 + i, "claude-opus-4-8", 10 * (i + 1), 100) for i in range(10)]
    chosen = choose(jobs, 20, Settings())
    by_model: dict[str, list[int]] = {}
    for job in chosen:
        by_model.setdefault(job.model, []).append(len(str(job.messages[0]["content"])))
    # three each at least, the rest by jobs x sqrt(output price): 90 x sqrt(5) against 10 x sqrt(25)
    shares = sorted((m, len(v)) for m, v in by_model.items())
    assert shares == [("claude-haiku-4-5", 16), ("claude-opus-4-8", 4)]
    haiku = sorted(by_model["claude-haiku-4-5"])
    assert haiku[0] < 100 and haiku[-1] > 800  # from the short prompts to the long ones
    assert len({j.id for j in chosen}) == 20


def _job(i: int, model: str, chars: int, max_tokens: int) -> Job:
    return Job(
        id=f"j{i}",
        seq=i,
        messages=[{"role": "user", "content": "x" * chars}],
        model=model,
        max_tokens=max_tokens,
    )


def _sd(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
