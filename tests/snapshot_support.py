"""Real snapshots for the views' tests: a real `Governor`'s view, `RunMetrics` fed with
`JobResult`s shaped as a worker reports them, an `EngineState` as a driver hands it over, and the
real `build_snapshot`. Time is a fake clock throughout (monotonic seconds from 100.0)."""

from __future__ import annotations

from typing import Any

from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.outcomes import JobError, JobResult, Usage
from anvil_cli.policy.governor import BreakerPolicy, Governor, Grant, Limits, Outcome
from anvil_cli.snapshot.build import build_snapshot
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.state import EngineState, WorkerInfo
from anvil_cli.snapshot.types import Alert, Snapshot

HAIKU, SONNET = "claude-haiku-4-5", "claude-sonnet-4-6"
WALL0 = 1_700_000_000.0  # wall-clock time of monotonic 100.0 (the metrics' start)
T0 = 100.0
LIMITS = {
    "haiku": Limits(requests_per_minute=1200, burst_size=50, output_tokens_per_minute=80_000),
    "sonnet": Limits(requests_per_minute=1000, burst_size=50),
}


def real_governor(
    *, draw_output_tokens: int = 60_000, sonnet_breaker_open: bool = False, sonnet_429_s: float | None = None,
    spent_usd: float = 0.0, warn_usd: float | None = 4.0, now: float = T0,
) -> Governor:  # fmt: skip
    """A governor with a haiku and a sonnet pool; haiku's output-token bucket drawn down by
    `draw_output_tokens`; optionally sonnet's breaker opened by failures, or its pool paused."""
    gov = Governor(
        lambda model: (f"default:{model.split('-')[1]}", LIMITS[model.split("-")[1]]),
        BreakerPolicy(failure_threshold=5, recovery_timeout_s=12.0),
        max_usd=5.0,
        warn_usd=warn_usd,
        now=now,
    )
    grant = gov.acquire(HAIKU, 100, draw_output_tokens, 0.01, now=now)
    assert isinstance(grant, Grant), grant
    out = Outcome(ok=True, input_tokens=100, output_tokens=draw_output_tokens, cost_usd=spent_usd)
    gov.settle(grant.ticket, out, now=now)
    other = gov.acquire(SONNET, 100, 100, 0.0, now=now)
    assert isinstance(other, Grant), other
    gov.settle(other.ticket, Outcome(ok=True, input_tokens=100, output_tokens=100), now=now)
    outcomes = [Outcome(ok=False, status_code=529, breaker_failure=True)] * (5 if sonnet_breaker_open else 0)
    if sonnet_429_s is not None:
        outcomes.append(Outcome(ok=False, status_code=429, retry_after_s=sonnet_429_s))
    grants = [gov.acquire(SONNET, 10, 10, 0.0, now=now) for _ in outcomes]  # all sent before any answer
    for grant, outcome in zip(grants, outcomes, strict=True):
        assert isinstance(grant, Grant), grant
        gov.settle(grant.ticket, outcome, now=now)
    return gov


def breaker_history(gov: Governor) -> tuple[dict[str, Any], ...]:
    """The governor's breaker events as the conductor keeps them for its views (wall `at`)."""
    return tuple(
        {"at": WALL0 + ev.at - T0, "kind": ev.kind, **ev.data}
        for ev in gov.drain_events()
        if ev.kind == "breaker"
    )


def job(
    seq: int, model: str = HAIKU, *, ok: bool = True, call_s: float = 0.3, job_s: float = 1.0,
    failed_calls: tuple[tuple[int, str], ...] = (), cost_usd: float = 0.001, tool_turns: int = 0,
) -> JobResult:  # fmt: skip
    """A job's result as a worker reports it: each call in the attempt log with its latency."""
    log: list[Attempt] = []
    for n, (code, etype) in enumerate(failed_calls, start=1):
        log.append(Attempt(n, model, code, latency_s=call_s, error_type=etype, message=etype))
    calls = 0 if not ok else 1 + tool_turns
    log += [Attempt(len(log) + i + 1, model, 200, latency_s=call_s) for i in range(calls)]
    error = None if ok else JobError("invalid_request_error", "prompt is too long", 400)
    return JobResult(
        seq=seq,
        succeeded=ok,
        model=model,
        attempts=len(log),
        usage=Usage(input_tokens=300, output_tokens=120),
        cost_usd=cost_usd,
        latency_s=job_s,
        error=error,
        attempt_log=tuple(log),
    )


def feed(m: RunMetrics, result: JobResult, now: float) -> None:
    """Report a job as the conductor does: each failed call as it happens, then the result."""
    for entry in result.attempt_log or ():
        if not entry.ok:
            m.on_attempt(entry, now)
    m.on_result(result, now)


def fed_metrics(n: int = 600, total: int = 1000) -> RunMetrics:
    """`n` jobs over `n / 10` seconds, alternating haiku and sonnet; calls take 0.2-0.6 s, jobs
    1-10 s (they wait for the limiter); every 50th job had an overloaded call first, every 97th
    failed."""
    m = RunMetrics(total=total, started_at=T0)
    for i in range(n):
        failed_calls = ((529, "overloaded_error"),) if i % 50 == 7 else ()
        result = job(
            i,
            (HAIKU, SONNET)[i % 2],
            ok=i % 97 != 5,
            call_s=0.2 + (i % 5) / 10,
            job_s=1.0 + (i % 10),
            failed_calls=failed_calls,
        )
        feed(m, result, T0 + i * 0.1)
    return m


def engine_state(**over: Any) -> EngineState:
    """What the conductor hands over mid-run: 18 of 20 agents busy, 350 jobs ready."""
    fields: dict[str, Any] = {
        "run_id": "20250101-120000-abcdef",
        "mode": "messages",
        "phase": "running",
        "paused": False,
        "in_flight": 18,
        "agent_limit": 20,
        "agent_min": 1,
        "agent_max": 20,
        "queue_depth": 350,
        "workers": (WorkerInfo(0, 11, True, 9), WorkerInfo(1, 12, True, 9)),
        "worker_restarts": 1,
    }
    fields.update(over)
    if "governor" not in fields:
        fields["governor"] = real_governor(now=T0 + 60.0).view(T0 + 60.0)
    return EngineState(**fields)


def snapshot(
    m: RunMetrics | None = None, *, now: float = T0 + 60.0, alerts: tuple[Alert, ...] = (), growing: int = 0,
    **state: Any,
) -> Snapshot:  # fmt: skip
    """The real builder's snapshot of `engine_state(**state)` and `m` (default `fed_metrics()`)."""
    return build_snapshot(
        engine_state(**state),
        m if m is not None else fed_metrics(),
        batch_path="/data/batch.jsonl",
        started_wall=WALL0,
        now=now,
        alerts=alerts,
        growing=growing,
    )


def set_in(snap: Snapshot, path: str, value: Any) -> Snapshot:
    """Set one figure of a real snapshot (`"errors.error_rate_pct"`); the key must exist, so a
    test cannot invent a shape the builder does not produce."""
    *parents, last = path.split(".")
    node: Any = snap
    for key in parents:
        node = node[key]
    assert last in node, f"{path} is not in the snapshot"
    node[last] = value
    return snap
