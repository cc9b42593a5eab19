"""Deciding each answer: directives, rate limits, faults, the reply. No I/O; time is passed in."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from anvil_cli.policy.pricing.table import model_class
from anvil_cli.policy.tokens import estimate_input_tokens
from anvil_cli.sim.answers.caching import CachePlan, PromptCache
from anvil_cli.sim.answers.directives import NONE, DirectiveError, Directives, request_directives
from anvil_cli.sim.answers.responses import compose, message
from anvil_cli.sim.answers.structured import is_judge
from anvil_cli.sim.config import SimConfig, check_endpoints, endpoint_config, limits_config
from anvil_cli.sim.digest import request_digest
from anvil_cli.sim.errors import SPEND_CAP_CODE
from anvil_cli.sim.rate_limits import RateLimiter
from anvil_cli.sim.stats import Stats
from anvil_cli.sim.switches import Switches

SPEND_CAP_MESSAGE = "You have reached your specified API usage limits (simulated)."


@dataclass(slots=True)
class Outcome:
    """What to answer: a message (`kind="ok"`), an error, or a dropped connection."""

    kind: str = "ok"  # "ok" | "error" | "drop"
    status: int = 200
    message: str | None = None  # error message (None: the default of its type)
    details: dict[str, Any] | None = None
    retry_after_s: float | None = None  # sent as `retry-after` on errors
    body: dict[str, Any] | None = None  # the message of an "ok" outcome
    delay_s: float = 0.0  # before the first byte
    token_delay_s: float = 0.0  # spread over the generated tokens
    stream_error: bool = False  # stream a 200 that ends in an `error` event
    slowed: bool = False  # the slow fault added `slow_ms` to `delay_s`
    digest: str = ""


def _error(status: int, message: str | None = None, **extra: Any) -> Outcome:
    return Outcome(kind="error", status=status, message=message, **extra)


def request_rng(seed: int, digest: str, attempt: int) -> random.Random:
    """A generator that depends only on the seed, the request and its attempt number."""
    return random.Random(f"{seed}:{digest}:{attempt}")


def _directed_error(status: int, directives: Directives, spend_cap: bool = False) -> Outcome:
    if status == 429 and spend_cap:
        return _error(429, SPEND_CAP_MESSAGE, details={"error_code": SPEND_CAP_CODE})
    retry = float(directives.retry_after_s) if status == 429 else None
    return _error(status, retry_after_s=retry)


def injected_outcome(directives: Directives, attempt: int) -> Outcome | None:
    """What `status=`, `drop=` and `fail=` ask for on `attempt` (1-based), in that order."""
    if directives.status is not None and directives.status >= 400:
        return _directed_error(directives.status, directives, directives.spend_cap)
    if attempt <= directives.drop:
        return Outcome(kind="drop")
    status = directives.fail_status(attempt)
    if status is not None and status >= 400:
        return _directed_error(status, directives)
    return None


def random_fault(config: SimConfig, draw: float) -> Outcome | None:
    """A fault chosen by one uniform `draw`: overloaded, then api_error, then drop."""
    edge = config.overloaded_rate
    if draw < edge:
        return _error(529)
    edge += config.error_rate
    if draw < edge:
        return _error(500)
    edge += config.drop_rate
    if draw < edge:
        return Outcome(kind="drop")
    return None


def _latency(
    config: SimConfig, directives: Directives, rng: random.Random, slow: bool, output_tokens: int
) -> tuple[float, float]:
    """(seconds before the first byte, seconds spread over the tokens)."""
    if directives.latency_ms is not None:
        return directives.latency_ms / 1000.0, 0.0
    base_ms = config.latency_ms
    if config.latency_spread > 0 and base_ms > 0:
        base_ms *= math.exp(rng.gauss(0.0, config.latency_spread))
    if slow:
        base_ms += config.slow_ms
    return base_ms / 1000.0, config.ms_per_output_token * output_tokens / 1000.0


def _offers_tool(body: Mapping[str, Any], name: str) -> bool:
    return any(isinstance(t, Mapping) and t.get("name") == name for t in body.get("tools") or [])


@dataclass(slots=True)
class SimCore:
    """The simulator's state (buckets, cache, attempt counters, stats) and its decisions.

    With `config.endpoints`, it also holds one core per simulated endpoint (`endpoints`): each
    with its own buckets, prompt cache and stats (counted in this one's too), sharing the
    attempt counters (a request retried on another endpoint is its next attempt) and the
    endpoints' on/off `switches`.
    """

    config: SimConfig
    limiter: RateLimiter = field(init=False)
    cache: PromptCache = field(init=False)
    attempts: dict[str, int] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    name: str = ""  # the simulated endpoint this core answers for; "" = the unprefixed routes
    switches: Switches | None = None  # shared by the simulator's cores when it has endpoints
    endpoints: dict[str, SimCore] = field(default_factory=dict)
    ceilings: dict[str, RateLimiter] = field(default_factory=dict)  # the simulator's shared limits
    shared: tuple[RateLimiter, ...] = ()  # the ceilings this endpoint draws from too

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.config)
        self.cache = PromptCache(default_ttl_s=self.config.cache_ttl_s)
        if self.config.endpoints:
            check_endpoints(self.config)
            self.switches = Switches(self.config.endpoints)
            self.ceilings = {n: RateLimiter(limits_config(c)) for n, c in self.config.shared.items()}
            self.endpoints = {name: self._endpoint_core(name) for name in self.config.endpoints}

    def _endpoint_core(self, name: str) -> SimCore:
        shared = tuple(self.ceilings[n] for n, c in self.config.shared.items() if name in c.endpoints)
        return SimCore(
            endpoint_config(self.config, name),
            attempts=self.attempts,
            stats=Stats(parent=self.stats),
            name=name,
            switches=self.switches,
            shared=shared,
        )

    def reset(self) -> None:
        """Forget stats, attempt counters, cached prefixes and bucket levels (every endpoint's)."""
        self.stats.reset()
        self.attempts.clear()
        self.cache.clear()
        self.limiter.pools.clear()
        for ceiling in self.ceilings.values():
            ceiling.pools.clear()
        for core in self.endpoints.values():
            core.reset()

    def is_off(self, now_s: float) -> bool:
        """This core's simulated endpoint is off at `now_s` (never for the unprefixed routes)."""
        return bool(self.name) and self.switches is not None and self.switches.is_off(self.name, now_s)

    def snapshot(self, now_s: float) -> dict[str, Any]:
        """The stats; with endpoints, each one's under `endpoints` (with `off` and `provider`)."""
        data = self.stats.snapshot()
        if self.endpoints:
            data["endpoints"] = {
                name: {
                    **core.stats.snapshot(),
                    "off": core.is_off(now_s),
                    "provider": self.config.endpoints[name].provider,
                }
                for name, core in self.endpoints.items()
            }
        return data

    def _throw_switches(self, directives: Directives) -> str | None:
        """Apply `endpoint_off=` / `endpoint_on=`; a problem when one names no endpoint."""
        for name, off in ((directives.endpoint_off, True), (directives.endpoint_on, False)):
            if name is None:
                continue
            if self.switches is None or not self.switches.known(name):
                return f"@sim{{endpoint_{'off' if off else 'on'}={name}}} names no simulated endpoint"
            self.switches.throw(name, off)
        return None

    def _next_attempt(self, digest: str) -> int:
        attempt = self.attempts.get(digest, 0) + 1
        self.attempts[digest] = attempt
        return attempt

    def _input(
        self, body: Mapping[str, Any], directives: Directives, may_cache: bool, now_s: float
    ) -> CachePlan:
        if directives.input_tokens is not None:
            return CachePlan(input_tokens=directives.input_tokens)
        total = estimate_input_tokens(body)
        return self.cache.plan(body, total, now_s) if may_cache else CachePlan(input_tokens=total)

    def answer(
        self,
        body: Mapping[str, Any],
        now_s: float,
        may_have_directives: bool = True,
        may_cache: bool = True,
        limited: bool = True,
    ) -> Outcome:
        """Decide the answer to a valid create body arriving at `now_s`.

        `may_have_directives` / `may_cache` are False when the raw body lacks `@sim{` /
        `cache_control` (a fast path); `limited` is False for Message Batches items.
        """
        try:
            directives = request_directives(body, may_have_directives)
        except DirectiveError as exc:
            return _error(400, str(exc))
        if directives is not NONE and is_judge(body):
            directives = directives.for_judge()
        problem = self._throw_switches(directives)
        if problem is not None:
            return _error(400, problem)
        if directives.tool is not None and not _offers_tool(body, directives.tool):
            return _error(400, f"@sim{{tool={directives.tool}}} names a tool the request does not offer")
        digest = request_digest(body)
        attempt = self._next_attempt(digest)
        injected = None
        if directives.for_model is None or directives.for_model == body.get("model"):
            injected = injected_outcome(directives, attempt)
        outcome = injected or self._admit(body, directives, may_cache, limited, now_s)
        if isinstance(outcome, CachePlan):
            outcome = self._succeed(body, directives, outcome, attempt, digest, now_s)
        outcome.digest = digest
        return outcome

    def _admit(
        self, body: Mapping[str, Any], directives: Directives, may_cache: bool, limited: bool, now_s: float
    ) -> Outcome | CachePlan:
        plan = self._input(body, directives, may_cache, now_s)
        if limited:
            cost = plan.input_tokens + plan.write_tokens
            klass = model_class(body["model"])
            limiters = (self.limiter, *self.shared)  # its own limits and any shared ceiling's
            wait_s = max(limiter.wait_s(klass, cost, now_s) for limiter in limiters)
            if wait_s > 0:
                return _error(429, retry_after_s=wait_s)
            for limiter in limiters:
                limiter.take(klass, cost, now_s)
        return plan

    def _succeed(
        self,
        body: Mapping[str, Any],
        directives: Directives,
        plan: CachePlan,
        attempt: int,
        digest: str,
        now_s: float,
    ) -> Outcome:
        cfg = self.config
        rng = request_rng(cfg.seed, digest, attempt)
        fault = random_fault(cfg, rng.random())
        slow = rng.random() < cfg.slow_rate
        if fault is not None:
            return fault
        reply = compose(
            body, directives, cfg.output_tokens, cfg.output_tokens_spread, rng, cfg.invalid_rate, cfg.seed
        )
        for limiter in (self.limiter, *self.shared):
            limiter.charge_output(model_class(body["model"]), reply.output_tokens, now_s)
        self.cache.commit(plan, now_s)
        msg = message(f"msg_sim{rng.getrandbits(96):024x}", body["model"], reply, plan)
        delay_s, token_delay_s = _latency(cfg, directives, rng, slow, reply.output_tokens)
        stream_error = attempt <= directives.stream_error and bool(body.get("stream"))
        if not stream_error:
            self.stats.success(body["model"], digest, msg["usage"])
            if reply.structured or reply.invalid:
                self.stats.shaped(reply.structured, reply.invalid)
        slowed = slow and directives.latency_ms is None  # a `latency_ms` directive overrides it
        return Outcome(
            body=msg, delay_s=delay_s, token_delay_s=token_delay_s, stream_error=stream_error, slowed=slowed
        )
