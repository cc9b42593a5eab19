"""`anvil plan --sample auto`'s rules as pure functions (plan/rounds.py): the precision of a
range, the answers a target needs, each round's size and when sampling stops; the jobs of a
later round (`choose_more`); and the duration's range (plan/schedule.py's `Pace`,
plan/duration.py) with exact numbers. No I/O, no clock."""

from __future__ import annotations

import math

import pytest

from anvil_cli.config.settings import RateLimit, Settings
from anvil_cli.jobs.job import Job
from anvil_cli.plan.duration import BURST_RESERVE, PACING, duration_paces, latency_spread
from anvil_cli.plan.estimate import OutputModel, make_plan
from anvil_cli.plan.rounds import (
    ALL_SAMPLED,
    BUDGET,
    FLOOR,
    MIN_ROUND,
    REACHED,
    answers_needed,
    first_round,
    more_to_reach,
    next_round,
    precision,
)
from anvil_cli.plan.sample import choose, choose_more
from anvil_cli.plan.schedule import Load, Pace, schedule
from anvil_cli.policy.forecast import Z90, Answer, fit_models


def test_precision_is_the_half_width_over_the_middle() -> None:
    assert precision(90.0, 110.0) == pytest.approx(0.1)
    assert precision(5.0, 5.0) == 0.0
    assert precision(0.0, 0.0) == 0.0
    assert precision(0.0, 10.0) == pytest.approx(1.0)


def test_answers_needed_follow_one_over_n_above_the_floor() -> None:
    # no floor: the half-width goes as 1/sqrt(n), so halving it takes 4x the answers
    assert answers_needed(20, 0.20, 0.0, 0.10) == 80
    # a floor of 6%: h^2 = 0.0036 + c/n with c/20 = 0.04 - 0.0036 -> n = 20 x 0.0364 / 0.0064
    assert answers_needed(20, 0.20, 0.06, 0.10) == math.ceil(20 * 0.0364 / 0.0064)
    assert answers_needed(20, 0.08, 0.06, 0.10) == 20  # already there
    assert answers_needed(20, 0.20, 0.10, 0.10) is None  # the target is the floor: never reached
    assert answers_needed(20, 0.101, 0.0, 0.10) == 21  # at least one more


def test_first_round_is_twenty_or_three_per_model() -> None:
    assert first_round(1500, 1) == 20
    assert first_round(1500, 9) == 27
    assert first_round(12, 1) == 12


def _next(**kw: float) -> tuple[int, str | None]:
    args: dict[str, float] = {
        "n": 20,
        "now": 0.20,
        "floor": 0.0,
        "target": 0.10,
        "jobs_left": 1000,
        "budget_left_usd": 100.0,
        "usd_per_answer": 0.01,
    }
    args.update(kw)
    step = next_round(**args)  # type: ignore[arg-type]
    return step.size, step.stop


def test_a_round_samples_what_the_spread_says_capped_at_twice_the_answers_so_far() -> None:
    assert _next() == (40, None)  # 80 needed, 60 more, but at most 2 x 20
    assert _next(n=60, now=0.115) == (20, None)  # 60 x 1.3225 = 80 needed: 20 more
    assert _next(n=60, now=0.102) == (MIN_ROUND, None)  # 63 needed: a minimum round
    assert _next(jobs_left=7) == (7, None)  # what the batch has left


def test_sampling_stops_at_the_target_the_batch_the_floor_or_the_budget() -> None:
    assert _next(now=0.09) == (0, REACHED)
    assert _next(now=0.10) == (0, REACHED)
    assert _next(jobs_left=0) == (0, ALL_SAMPLED)
    assert _next(floor=0.12) == (0, FLOOR)
    assert _next(budget_left_usd=0.25) == (25, None)  # cut to what is left: 25 answers at $0.01
    assert _next(budget_left_usd=0.09) == (0, BUDGET)  # not even a minimum round
    # a target one answer away is worth a round smaller than the minimum, as the budget allows
    step = next_round(
        n=60, now=0.1005, floor=0.0, target=0.10, jobs_left=100, budget_left_usd=0.02, usd_per_answer=0.01
    )
    assert (step.size, step.stop, step.needed) == (2, None, 61)


def test_what_more_the_target_would_take() -> None:
    assert more_to_reach(80, 20, 0.01) == (60, pytest.approx(0.6))
    assert more_to_reach(None, 20, 0.01) is None


def _job(i: int, model: str, chars: int) -> Job:
    return Job(
        id=f"j{i}", seq=i, messages=[{"role": "user", "content": "x" * chars}], model=model, max_tokens=100
    )


def test_a_later_round_takes_new_jobs_toward_each_models_share() -> None:
    jobs = [_job(i, "claude-haiku-4-5", 10 * (i + 1)) for i in range(90)]
    jobs += [_job(90 + i, "claude-opus-4-8", 10 * (i + 1)) for i in range(10)]
    first = choose(jobs, 20, Settings())
    assert choose_more(jobs, 20, Settings(), ()) == first  # nothing taken: the same as choose
    taken = {j.id for j in first}
    more = choose_more(jobs, 20, Settings(), taken)
    assert len(more) == 20 and not taken & {j.id for j in more}
    both = first + more
    # 40 in all by jobs x sqrt(output price) (90 x sqrt(5) against 10 x sqrt(25)): 32 and 8
    assert sum(j.model == "claude-opus-4-8" for j in both) == 8
    lengths = sorted(len(str(j.messages[0]["content"])) for j in more if j.model == "claude-haiku-4-5")
    assert lengths[0] < 150 and lengths[-1] > 750  # spread over the prompt lengths left
    rest = choose_more(jobs, 1000, Settings(), taken | {j.id for j in more})
    assert len(rest) == 60  # what is left, no more


LIMITS = {"default": RateLimit(requests_per_minute=600, burst_size=10, output_tokens_per_minute=6000)}


def _limit_for(_model: str) -> tuple[str, RateLimit]:
    return "default", LIMITS["default"]


def test_the_pace_moves_a_rate_bound_schedule_by_the_limiters_behaviour() -> None:
    loads = [Load("claude-haiku-4-5", 100, 11_100, 5000)]
    expected = schedule(loads, _limit_for, 2.0, 50, 1.0)
    assert expected.duration_s == pytest.approx(9.0 + 2.0)  # (100 - 10) / 10 per s, one call
    slow = schedule(loads, _limit_for, 2.0, 50, 1.0, Pace(tail_s=3.0, rate_share=0.98, bucket_start=0.9))
    # (100 - 9) requests at 9.8 a second, then a last call of 3 s
    assert slow.duration_s == pytest.approx(91 / 9.8 + 3.0)
    assert slow.binding == "requests" == expected.binding
    fast = schedule(loads, _limit_for, 2.0, 50, 1.0, Pace(tail_s=1.0))
    assert fast.duration_s == pytest.approx(9.0 + 1.0)
    # output tokens at 1.5x the expected: 7,500, 6,000 in the bucket, 100 a second after
    more_output = schedule(loads, _limit_for, 2.0, 50, 1.5)
    assert more_output.pools[0].seconds_by_limit["output tokens"] == pytest.approx(15.0)


def test_the_pace_moves_an_agent_bound_schedule_by_each_calls_spread() -> None:
    loads = [Load("claude-haiku-4-5", 20, 2000, 1000)]
    roomy = {"default": RateLimit(requests_per_minute=60000, burst_size=100)}
    expected = schedule(loads, lambda _m: ("default", roomy["default"]), 1.0, 2, 1.0)
    assert expected.binding == "concurrency (agents)" and expected.duration_s == pytest.approx(10.0)
    # 9 calls before each agent's last, each +/-50%: the chain varies by 0.5 x sqrt(9) calls
    slow = schedule(
        loads,
        lambda _m: ("default", roomy["default"]),
        1.0,
        2,
        1.0,
        Pace(tail_s=1.5, chain_sd=Z90, latency_cv=0.5),
    )
    assert slow.duration_s == pytest.approx(9.0 + Z90 * 0.5 * 3.0 + 1.5)


def test_the_duration_paces_from_the_latency_spread() -> None:
    low, mid, high = duration_paces(2.0, (0.8, 1.0, 1.25), (0.5, 0.1))
    assert mid == (2.0, 1.0, None)
    assert low[:2] == (pytest.approx(2.0 * (1 - Z90 * 0.1)), 0.8)
    assert low[2] == Pace(tail_s=pytest.approx(low[0] * (1 - Z90 * 0.5)), chain_sd=-Z90, latency_cv=0.5)
    assert high[:2] == (pytest.approx(2.0 * (1 + Z90 * 0.1)), 1.25)
    assert high[2] is not None
    assert (high[2].rate_share, high[2].bucket_start, high[2].chain_sd) == (PACING, 1 - BURST_RESERVE, Z90)
    assert high[2].tail_s == pytest.approx(high[0] * (1 + Z90 * 0.5))


def test_the_latency_spread_comes_from_the_fit_or_the_simulators_known_spread() -> None:
    answers = [Answer("claude-haiku-4-5", 100, 100, 400, s) for s in (1.0, 2.0, 3.0, 2.0)]
    fit = fit_models(answers, "sample")["claude-haiku-4-5"]
    assert fit.latency is not None and fit.latency.slope == 0.0
    cv, error = latency_spread([(30, fit, 30 * 100.0, 30 * 100.0**2), (10, None, 0.0, 0.0)], 0.0)
    assert cv == pytest.approx(30 * fit.latency.cv / 40)
    assert error == pytest.approx(30 * fit.latency.cv / 2 / 40)  # sqrt(4 answers)
    assert latency_spread([(10, None, 0.0, 0.0)], 0.3) == (pytest.approx(math.sqrt(math.exp(0.09) - 1)), 0.0)
    assert latency_spread([], 0.3) == (0.0, 0.0)


def test_a_latency_growing_with_output_spreads_with_the_output() -> None:
    # 0.1 s + 1 ms a token exactly; outputs 100 to 300 tokens around a flat mean of 200
    answers = [
        Answer("claude-sonnet-4-6", 100, o, 1000, 0.1 + o / 1000) for o in (100, 150, 200, 250, 300, 200)
    ]
    fit = fit_models(answers, "sample")["claude-sonnet-4-6"]
    assert fit.latency is not None and fit.latency.slope == pytest.approx(0.001) and fit.latency.cv < 1e-9
    # jobs expecting 100 and 300 tokens (mean 200, sd 100 across them), each +/- the output fit's cv
    cv, error = latency_spread([(2, fit, 400.0, 100.0**2 + 300.0**2)], 0.0)
    by_output, across = 0.001 * fit.output.cv * 200, 0.001 * 100
    assert cv == pytest.approx(math.sqrt(by_output**2 + across**2) / 0.3)
    assert error == pytest.approx(by_output / 0.3 / math.sqrt(6))


def test_a_rate_bound_plans_duration_is_a_range_not_a_point() -> None:
    settings = Settings.model_validate(
        {
            "rate_limits": {"default": {"requests_per_minute": 600, "burst_size": 10}},
            "scaling": {"max_agents": 50, "max_concurrent_jobs": 50},
        }
    )
    jobs = [_job(i, "claude-haiku-4-5", 396) for i in range(100)]
    answers = [
        Answer("claude-haiku-4-5", 111, 50 + 10 * (i % 5), 100, 1.0 + 0.25 * (i % 5)) for i in range(10)
    ]
    plan = make_plan(jobs, settings, None, OutputModel(latency_s=2.0), fit_models(answers, "sample"))
    assert plan.binding_limit == "requests"
    d = plan.duration_range_s
    assert d["p10"] < d["expected"] < d["p90"]
    assert plan.duration_spread["binding_p10"] == plan.duration_spread["binding_p90"] == "requests"
    fit = fit_models(answers, "sample")["claude-haiku-4-5"]
    assert fit.latency is not None
    latency = plan.assumed_latency_s
    cv, error = fit.latency.cv, fit.latency.cv / math.sqrt(10)
    high = latency * (1 + Z90 * error)
    assert d["p90"] == pytest.approx((100 - 9) / (10 * PACING) + high * (1 + Z90 * cv), abs=1e-3)
    low = latency * (1 - Z90 * error)
    assert d["p10"] == pytest.approx(9.0 + low * (1 - Z90 * cv), abs=1e-3)
    assert "duration_spread" in plan.as_dict() and "cost_total" not in plan.as_dict()


def test_jobs_already_answered_are_known_not_forecast() -> None:
    jobs = [_job(i, "claude-haiku-4-5", 396) for i in range(10)]
    answers = [Answer("claude-haiku-4-5", 111, 40 + 20 * (i % 3), 100) for i in range(6)]
    fits = fit_models(answers, "sample")
    forecast = make_plan(jobs, Settings(), None, OutputModel(latency_s=1.0), fits)
    assert forecast.cost_range_usd["p10"] < forecast.cost_range_usd["p90"]
    known = {j.id: 30 + i for i, j in enumerate(jobs)}
    plan = make_plan(jobs, Settings(), None, OutputModel(latency_s=1.0), fits, answered=known)
    assert plan.models[0].expected_output_tokens == sum(known.values())
    c = plan.cost_range_usd
    assert c["p10"] == c["expected"] == c["p90"] == pytest.approx(plan.expected_usd)
    half = make_plan(
        jobs, Settings(), None, OutputModel(latency_s=1.0), fits, answered=dict(list(known.items())[:5])
    )
    assert (
        0
        < precision(half.cost_range_usd["p10"], half.cost_range_usd["p90"])
        < precision(forecast.cost_range_usd["p10"], forecast.cost_range_usd["p90"])
    )
