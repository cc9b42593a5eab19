"""`anvil plan`: tokens, cost and duration of a batch before spending anything.

Input tokens come from `count_tokens` when an API is reachable, else from Anvil's local
estimate (the plan says which). Expected output tokens per call are an assumption:
`plan.expected_output_tokens` (a mean, capped by each job's `max_tokens`), else
`plan.expected_output_ratio` x `max_tokens`; against `--simulate` the embedded simulator's own
distribution is used. Worst case: every call produces `max_tokens` and writes its whole input
to a 1-hour cache.

Duration, per rate-limit pool: each limit needs `max(0, amount - bucket capacity) / rate`
(requests start with `burst_size` in the bucket, token buckets with a minute's worth); the
agents can carry at most `agents / latency` calls a second (Little's law). The slowest of these
is the binding limit; the run takes that long plus one call's latency. The concurrency needed
to reach a pool's rate-limited throughput is `throughput x latency`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from anvil_cli.batch.job import Job
from anvil_cli.config import Settings
from anvil_cli.models import builtin_prices, model_class
from anvil_cli.pricing import Pricer
from anvil_cli.routing import model_for
from anvil_cli.tokens import estimate_input_tokens
from anvil_cli.toolspec import split_tools

COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice")
TokenCounter = Callable[[dict[str, Any]], int]


@dataclass(frozen=True, slots=True)
class OutputModel:
    """How many output tokens a call is expected to produce, and how long it takes."""

    latency_s: float
    mean_tokens: int | None = None  # a fixed mean, capped by max_tokens
    ratio: float = 0.5  # else this share of max_tokens
    lognormal_sigma: float = 0.0  # with mean_tokens: the spread of a lognormal around it

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


@dataclass
class PoolPlan:
    """One rate-limit pool: what it must carry, its limits, how long that takes."""

    pool: str
    models: list[str]
    requests: int
    input_tokens: int
    expected_output_tokens: float
    requests_per_minute: float
    input_tokens_per_minute: float | None
    output_tokens_per_minute: float | None
    seconds_by_limit: dict[str, float]
    binding_limit: str
    duration_s: float
    concurrency_needed: float


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
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_request(request: dict[str, Any]) -> dict[str, Any]:
    """The fields of a create request that `count_tokens` accepts, as the API sees them (tools
    without Anvil's own `anvil_command` key)."""
    return {k: v for k, v in split_tools(request)[0].items() if k in COUNT_FIELDS}


def make_plan(
    jobs: Iterable[Job],
    settings: Settings,
    counter: TokenCounter | None,
    out: OutputModel,
) -> Plan:
    """Plan a batch; `counter` counts a request's input tokens (None: the local estimate)."""
    pricer = Pricer.from_settings(settings)
    models: dict[str, ModelPlan] = {}
    total = 0
    for job in jobs:
        total += 1
        model = model_for(job, settings.routing)
        request = split_tools(job.request(model))[0]  # as sent: no Anvil-only keys
        tokens = counter(request) if counter is not None else estimate_input_tokens(request)
        expected_out = out.expected(job.max_tokens)
        mp = models.setdefault(model, ModelPlan(model))
        mp.jobs += 1
        mp.input_tokens += tokens
        mp.expected_output_tokens += expected_out
        mp.max_output_tokens += job.max_tokens
        mp.expected_usd += pricer.expected_usd(model, tokens, 0) + _out_usd(pricer, model, expected_out)
        mp.worst_usd += pricer.worst_case_usd(model, tokens, job.max_tokens)
    agents = settings.scaling.agent_limit()
    pools = _pools(list(models.values()), settings, out.latency_s)
    rate_s = max((p.duration_s - out.latency_s for p in pools), default=0.0)
    requests = sum(p.requests for p in pools)
    conc_s = (math.ceil(requests / agents) - 1) * out.latency_s if requests else 0.0
    slowest = max(pools, key=lambda p: p.duration_s, default=None)
    if rate_s <= 0:
        slowest = None
    binding = slowest.binding_limit if slowest is not None else "none (one call's latency)"
    notes: list[str] = []
    if conc_s > rate_s:
        binding, slowest = "concurrency (agents)", None
        needed = math.ceil(sum(p.concurrency_needed for p in pools))
        notes.append(
            f"max_agents ({agents}) caps this run below what the limits can feed: set"
            f" scaling.max_agents (or --agents) to ~{needed:,} to reach them"
        )
    return Plan(
        jobs=total,
        token_source="count_tokens" if counter is not None else "estimate",
        output_assumption=out.describe(),
        assumed_latency_s=round(out.latency_s, 4),
        agents=agents,
        models=sorted(models.values(), key=lambda m: m.model),
        pools=pools,
        expected_usd=sum(m.expected_usd for m in models.values()),
        worst_usd=sum(m.worst_usd for m in models.values()),
        duration_s=(max(rate_s, conc_s) + out.latency_s) if requests else 0.0,
        binding_limit=binding,
        binding_pool=slowest.pool if slowest is not None else None,
        concurrency_needed=sum(p.concurrency_needed for p in pools),
        notes=notes,
    )


def _out_usd(pricer: Pricer, model: str, tokens: float) -> float:
    price = pricer.price(model)
    return 0.0 if price is None else tokens * price.output / 1_000_000


def _pools(models: list[ModelPlan], settings: Settings, latency_s: float) -> list[PoolPlan]:
    grouped: dict[str, list[ModelPlan]] = {}
    for mp in models:
        key, _ = settings.rate_limit_for(mp.model)
        grouped.setdefault(f"{key}:{model_class(mp.model)}", []).append(mp)
    return [_pool(name, group, settings, latency_s) for name, group in sorted(grouped.items())]


def _pool(name: str, group: list[ModelPlan], settings: Settings, latency_s: float) -> PoolPlan:
    _, rl = settings.rate_limit_for(group[0].model)
    requests = sum(m.jobs for m in group)
    inp = sum(m.input_tokens for m in group)
    outp = sum(m.expected_output_tokens for m in group)
    seconds = {"requests": _need_s(requests, rl.requests_per_minute, rl.burst_size)}
    if rl.input_tokens_per_minute:
        seconds["input tokens"] = _need_s(inp, rl.input_tokens_per_minute, rl.input_tokens_per_minute)
    if rl.output_tokens_per_minute:
        seconds["output tokens"] = _need_s(outp, rl.output_tokens_per_minute, rl.output_tokens_per_minute)
    binding = max(seconds, key=lambda k: seconds[k])
    rate_s = seconds[binding]
    throughput = requests / rate_s if rate_s > 0 else float(requests) / max(latency_s, 1e-9)
    return PoolPlan(
        pool=name,
        models=[m.model for m in group],
        requests=requests,
        input_tokens=inp,
        expected_output_tokens=round(outp, 1),
        requests_per_minute=rl.requests_per_minute,
        input_tokens_per_minute=rl.input_tokens_per_minute,
        output_tokens_per_minute=rl.output_tokens_per_minute,
        seconds_by_limit={k: round(v, 3) for k, v in seconds.items()},
        binding_limit=binding,
        duration_s=rate_s + latency_s,
        concurrency_needed=round(min(float(requests), throughput * latency_s), 1),
    )


def _need_s(amount: float, per_min: float, capacity: float) -> float:
    """Seconds a bucket refilled at `per_min` and starting full at `capacity` needs for `amount`."""
    return max(0.0, amount - capacity) / per_min * 60.0


def api_counter(client: Any) -> TokenCounter:
    """Counts through `POST /v1/messages/count_tokens`."""

    def count(request: dict[str, Any]) -> int:
        return int(client.messages.count_tokens(**count_request(request)).input_tokens)

    return count


def render(plan: Plan) -> list[str]:
    """The plan as plain lines."""
    source = "exact, from count_tokens" if plan.token_source == "count_tokens" else "local estimate"
    lines = [f"{plan.jobs:,} job(s); input tokens: {source}; output tokens: {plan.output_assumption}"]
    for m in plan.models:
        lines.append(
            f"  {m.model}: {m.jobs:,} job(s), {m.input_tokens:,} input tokens,"
            f" ~{m.expected_output_tokens:,.0f} output tokens (at most {m.max_output_tokens:,});"
            f" expected ${m.expected_usd:.4f}, worst case ${m.worst_usd:.4f}"
        )
    lines.append(
        f"cost: expected ${plan.expected_usd:.4f}, worst case ${plan.worst_usd:.4f}"
        f" (prices as read on {builtin_prices().read_on}; `prices:` in anvil.yaml overrides them)"
    )
    for p in plan.pools:
        limits = ", ".join(f"{k} {v:.1f}s" for k, v in p.seconds_by_limit.items())
        lines.append(
            f"  pool {p.pool}: {p.requests:,} request(s); needs {limits}; binding: {p.binding_limit};"
            f" concurrency needed ~{p.concurrency_needed:g}"
        )
    lines.append(
        f"duration: ~{plan.duration_s:.1f}s with {plan.agents} agent(s) at ~{plan.assumed_latency_s:g}s"
        f" per call; binding limit: {plan.binding_limit}"
        + (f" ({plan.binding_pool})" if plan.binding_pool else "")
        + f"; concurrency needed ~{plan.concurrency_needed:g}"
    )
    lines.extend(f"note: {n}" for n in plan.notes)
    return lines
