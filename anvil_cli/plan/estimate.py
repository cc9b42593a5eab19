"""`anvil plan`: tokens, cost and duration of a batch before spending anything.

Input tokens come from `count_tokens` when an API is reachable, else from Anvil's local
estimate (the plan says which). Expected output tokens per call are an assumption:
`plan.expected_output_tokens` (a mean, capped by each job's `max_tokens`), else
`plan.expected_output_ratio` x `max_tokens`; against `--simulate` the embedded simulator's own
distribution is used. Worst case: every call produces `max_tokens` and writes its whole input
to a 1-hour cache.

Checking answers adds calls: judges and re-asks (plan/checks.py), priced alike, in the total
and in the duration. Duration: per rate-limit pool at the configured limits, or the agents
(Little's law), whichever binds (plan/schedule.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from anvil_cli.config.settings import RateLimit, Settings
from anvil_cli.engine.requests import with_output_schema
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.toolspec import split_tools
from anvil_cli.plan import endpoints as pooled
from anvil_cli.plan.checks import ChecksPlanner
from anvil_cli.plan.duration import duration_paces, latency_spread
from anvil_cli.plan.schedule import Load, PoolPlan, merged, schedule
from anvil_cli.plan.simulated import structured_tokens
from anvil_cli.policy.forecast import ModelFit, Range, Total
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.policy.routing import model_for
from anvil_cli.policy.tokens import estimate_input_tokens

COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice")
TokenCounter = Callable[[dict[str, Any]], int]


@dataclass(frozen=True, slots=True)
class OutputModel:
    """How many output tokens a call is expected to produce, and how long it takes."""

    latency_s: float
    mean_tokens: int | None = None  # a fixed mean, capped by max_tokens
    ratio: float = 0.5  # else this share of max_tokens
    lognormal_sigma: float = 0.0  # with mean_tokens: the spread of a lognormal around it
    simulated: bool = False  # the embedded simulator's: JSON answers as long as it fills them
    latency_sigma: float = 0.0  # a known lognormal spread of one call's latency (the simulator's)

    def expected(self, max_tokens: int) -> float:
        if self.mean_tokens is None:
            return self.ratio * max_tokens
        if self.lognormal_sigma <= 0:
            return float(min(self.mean_tokens, max_tokens))
        return truncated_lognormal_mean(self.mean_tokens, self.lognormal_sigma, max_tokens)

    def describe(self) -> str:
        if self.mean_tokens is None:
            return f"{self.ratio:g} x max_tokens per call"
        spread = f", lognormal sigma {self.lognormal_sigma:g}" if self.lognormal_sigma else ""
        return f"mean {self.mean_tokens} per call{spread}, capped by max_tokens"


def truncated_lognormal_mean(mean: float, sigma: float, cap: float) -> float:
    """E[min(X, cap)] for a lognormal X with the given mean and sigma."""
    mu = math.log(mean) - sigma * sigma / 2
    z = (math.log(cap) - mu) / sigma

    def phi(x: float) -> float:
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    return mean * phi(z - sigma) + cap * (1 - phi(z))


def output_model(settings: Settings, simulate: bool) -> OutputModel:
    """The configured assumption, or the embedded simulator's distribution."""
    if simulate:
        from anvil_cli.sim import embedded

        median_s = embedded.LATENCY_MS / 1000.0
        return OutputModel(
            latency_s=median_s * math.exp(embedded.LATENCY_SPREAD**2 / 2),
            mean_tokens=embedded.OUTPUT_TOKENS,
            lognormal_sigma=embedded.OUTPUT_TOKENS_SPREAD,
            simulated=True,
            latency_sigma=embedded.LATENCY_SPREAD,
        )
    p = settings.plan
    return OutputModel(p.assumed_latency_s, p.expected_output_tokens, p.expected_output_ratio)


@dataclass
class ModelPlan:
    """One model's share of the batch."""

    model: str
    jobs: int = 0
    input_tokens: int = 0
    expected_output_tokens: float = 0.0
    max_output_tokens: int = 0
    expected_usd: float = 0.0
    worst_usd: float = 0.0
    output_source: str = "rule"  # "sample", "history" or "rule" (the max_tokens rule or plan settings)
    output_fit: str | None = None  # the fitted shape, when not by rule
    expected_latency_s: float | None = None  # from observed answers, when there are some


@dataclass
class Plan:
    """The whole plan, as printed and as `--json`."""

    jobs: int
    token_source: str  # "count_tokens" or "estimate"
    output_assumption: str
    assumed_latency_s: float
    agents: int
    models: list[ModelPlan]
    pools: list[PoolPlan]
    expected_usd: float
    worst_usd: float
    duration_s: float
    binding_limit: str
    binding_pool: str | None
    concurrency_needed: float
    method: str = "rule"  # how output was forecast: sample, history, simulator, rule, or a mix (history+rule)
    cost_range_usd: dict[str, float] = field(default_factory=dict)  # p10, expected, p90
    duration_range_s: dict[str, float] = field(default_factory=dict)
    sample: dict[str, Any] | None = None  # `--sample N` or `auto`: what the sample run(s) did
    # what the duration's range comes from: one call's latency spread (cv), the fitted mean
    # latency's own error (relative sd), and what binds at the range's p10 and p90
    duration_spread: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # with `endpoints:`: per pool, each endpoint's rate, the shared ceilings, the pooled rate and
    # what binds it (plan/endpoints.py); None, and left out of the JSON, without that section
    endpoints: list[dict[str, Any]] | None = None
    # with output schemas or judges: what checking costs (plan/checks.py), in the totals above;
    # None, and left out of the JSON, without them
    checks: dict[str, Any] | None = None
    # the cost forecast as summed (not in the JSON): `--sample auto` reads its parts
    cost_total: Total | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["cost_total"]
        for key in ("endpoints", "checks"):
            if out[key] is None:
                del out[key]
        return out


def count_request(request: dict[str, Any]) -> dict[str, Any]:
    """The fields of a create request that `count_tokens` accepts, as the API sees them (tools
    without Anvil's own `anvil_command` key)."""
    return {k: v for k, v in split_tools(request)[0].items() if k in COUNT_FIELDS}


def make_plan(
    jobs: Iterable[Job],
    settings: Settings,
    counter: TokenCounter | None,
    out: OutputModel,
    fits: Mapping[str, ModelFit] | None = None,
    sampled_reasks: Sequence[int] | None = None,
    sampled_grades: Mapping[str, float] | None = None,
    answered: Mapping[str, int] | None = None,
) -> Plan:
    """Plan a batch; `counter` counts a request's input tokens (None: the local estimate);
    `fits`: output lengths and latency observed per model (a sample, or earlier runs), used
    before the rule of `out`; `sampled_reasks`: re-asks per schema job of a sample run;
    `sampled_grades`: its judges' mean output tokens per judge model; `answered`: output tokens
    of jobs already answered (by id: `--sample auto`'s), known rather than forecast."""
    fits = fits or {}
    answered = answered or {}
    pricer = Pricer.from_settings(settings)
    pricers = _Pricers(settings, pricer)
    checking = ChecksPlanner(settings, pricers.of, sampled_reasks, out.simulated, sampled_grades)
    models: dict[str, ModelPlan] = {}
    cost, output = Total(), Total()
    squares: dict[str, float] = {}  # per model: the sum of its jobs' expected output tokens squared
    total = 0
    for job in jobs:
        total += 1
        model = model_for(job, settings.routing)
        asked = job.request(model)
        if job.output_schema is not None:  # asked for as a worker asks for it
            asked = with_output_schema(asked, job.output_schema, native=settings.checks.native_format)
        request = split_tools(asked)[0]  # as sent: no Anvil-only keys
        tokens = counter(request) if counter is not None else estimate_input_tokens(request)
        mp = models.setdefault(model, ModelPlan(model))
        fit = fits.get(model)
        expected_out = fit.output_tokens(tokens, job.max_tokens) if fit else out.expected(job.max_tokens)
        exact = fit is None and out.simulated and job.output_schema is not None
        if exact:  # the simulator answers a schema with JSON filled for it (plan/simulated.py)
            expected_out = min(structured_tokens(job.output_schema or {}), job.max_tokens)
        if job.id in answered:  # its answer is known (and cached for the batch's run)
            expected_out, exact = float(min(answered[job.id], job.max_tokens)), True
        pricer, dearest = pricers.of(model)
        in_usd = pricer.expected_usd(model, tokens, 0)
        out_usd = _out_usd(pricer, model, expected_out)
        cost.add_bounded(in_usd, in_usd, in_usd)  # input is counted (or estimated), not forecast
        if exact:
            cost.add_bounded(out_usd, out_usd, out_usd)
            output.add_bounded(expected_out, expected_out, expected_out)
        elif fit is not None:
            cost.add_fitted(out_usd, fit.output.cv, fit.answers, fit.spread, group=model)
            output.add_fitted(expected_out, fit.output.cv, fit.answers, fit.spread, group=model)
        elif out.lognormal_sigma > 0:  # a known distribution (the embedded simulator's)
            cv = math.sqrt(math.exp(out.lognormal_sigma**2) - 1)
            cost.add_fitted(out_usd, cv, KNOWN_DISTRIBUTION)
            output.add_fitted(expected_out, cv, KNOWN_DISTRIBUTION)
        else:  # nothing observed: the honest bounds, no output to max_tokens
            cost.add_bounded(out_usd, 0.0, _out_usd(pricer, model, job.max_tokens))
            output.add_bounded(expected_out, 0.0, job.max_tokens)
        mp.jobs += 1
        mp.input_tokens += tokens
        mp.expected_output_tokens += expected_out
        squares[model] = squares.get(model, 0.0) + expected_out * expected_out
        mp.max_output_tokens += job.max_tokens
        mp.expected_usd += in_usd + out_usd
        mp.worst_usd += dearest.worst_case_usd(model, tokens, job.max_tokens)
        checking.add(job, model, tokens, expected_out)
    checks = checking.result()
    if checks is not None:  # at their expected cost (plan/checks.py)
        cost.add_bounded(checks.expected_usd, checks.expected_usd, checks.expected_usd)
    latency = _describe_fits(models, fits, out)
    agents = settings.scaling.agent_limit()
    out_range = output.range()
    limit_for = pricers.limit_for
    loads = merged(
        [Load(m.model, m.jobs, m.input_tokens, m.expected_output_tokens) for m in models.values()]
        + (checks.loads if checks is not None else [])
    )
    spread = latency_spread(
        [(m.jobs, fits.get(m.model), m.expected_output_tokens, squares[m.model]) for m in models.values()],
        out.latency_sigma,
    )
    runs = [
        schedule(loads, limit_for, seconds, agents, share, pace)
        for seconds, share, pace in duration_paces(latency, _shares(out_range), spread)
    ]
    expected = runs[1]
    sources = sorted({m.output_source for m in models.values()})
    return Plan(
        jobs=total,
        token_source="count_tokens" if counter is not None else "estimate",
        output_assumption=out.describe(),
        assumed_latency_s=round(latency, 4),
        agents=agents,
        models=sorted(models.values(), key=lambda m: m.model),
        pools=expected.pools,
        expected_usd=sum(m.expected_usd for m in models.values()) + (checks.expected_usd if checks else 0.0),
        worst_usd=sum(m.worst_usd for m in models.values()) + (checks.worst_usd if checks else 0.0),
        duration_s=expected.duration_s,
        binding_limit=expected.binding,
        binding_pool=expected.binding_pool,
        concurrency_needed=sum(p.concurrency_needed for p in expected.pools),
        method="+".join(sources) if sources else "rule",
        cost_range_usd=cost.range().as_dict(),
        duration_range_s=Range(
            min(runs[0].duration_s, expected.duration_s),
            expected.duration_s,
            max(runs[2].duration_s, expected.duration_s),
        ).as_dict(3),
        duration_spread={
            "latency_cv": round(spread[0], 4),
            "latency_fit_error": round(spread[1], 4),
            "binding_p10": runs[0].binding,
            "binding_p90": runs[2].binding,
        },
        cost_total=cost,
        notes=expected.notes,
        endpoints=pricers.section(expected.pools),
        checks=checks.as_dict() if checks is not None else None,
    )


class _Pricers:
    """Prices and limits per model: the run's one endpoint, or with `endpoints:` the pooled
    rate and prices spread over them (plan/endpoints.py)."""

    def __init__(self, settings: Settings, pricer: Pricer) -> None:
        self.settings, self.pricer = settings, pricer
        self._of: dict[str, tuple[Pricer, Pricer]] = {}

    def of(self, model: str) -> tuple[Pricer, Pricer]:
        """(expected, worst-case) pricer for `model`."""
        if not self.settings.endpoints:
            return self.pricer, self.pricer
        if model not in self._of:
            self._of[model] = pooled.endpoint_pricers(self.settings, self.pricer, model)
        return self._of[model]

    def limit_for(self, model: str) -> tuple[str, RateLimit]:
        if not self.settings.endpoints:
            return self.settings.rate_limit_for(model)
        key, pool = pooled.pooled_rate(self.settings, model, self.pricer)
        return key, pool.rate_limit()

    def section(self, pools: list[PoolPlan]) -> list[dict[str, Any]] | None:
        if not self.settings.endpoints:
            return None
        out = []
        for p in pools:
            pool = pooled.pooled_rate(self.settings, p.models[0], self.pricer)[1]
            pooled.bind(pool, p.binding_limit)
            out.append(asdict(pool))
        return out


KNOWN_DISTRIBUTION = 10**9  # "answers" behind a distribution that is given, not fitted


def _describe_fits(models: dict[str, ModelPlan], fits: Mapping[str, ModelFit], out: OutputModel) -> float:
    """Mark each model's output source; the mean latency per call over the batch (observed
    where there are answers, else the assumption)."""
    weighted = 0.0
    for mp in models.values():
        fit = fits.get(mp.model)
        seconds = None
        if fit is None and out.lognormal_sigma > 0:
            mp.output_source = "simulator"
        if fit is not None:
            mp.output_source, mp.output_fit = fit.source, fit.describe()
            seconds = fit.latency_s(mp.expected_output_tokens / max(1, mp.jobs))
            mp.expected_latency_s = None if seconds is None else round(seconds, 4)
        weighted += mp.jobs * (seconds if seconds is not None else out.latency_s)
    jobs = sum(mp.jobs for mp in models.values())
    return weighted / jobs if jobs else out.latency_s


def _shares(out_range: Range) -> tuple[float, float, float]:
    """Output at its p10, expected and p90, as shares of the expected."""
    if out_range.expected <= 0:
        return (1.0, 1.0, 1.0)
    return (out_range.p10 / out_range.expected, 1.0, out_range.p90 / out_range.expected)


def _out_usd(pricer: Pricer, model: str, tokens: float) -> float:
    price = pricer.price(model)
    return 0.0 if price is None else tokens * price.output / 1_000_000


def api_counter(client: Any) -> TokenCounter:
    """Counts through `POST /v1/messages/count_tokens`."""

    def count(request: dict[str, Any]) -> int:
        return int(client.messages.count_tokens(**count_request(request)).input_tokens)

    return count
