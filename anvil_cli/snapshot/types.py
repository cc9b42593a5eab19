"""The run snapshot's shape, as TypedDicts: what every view reads (dashboard, progress line,
`anvil status`, `GET /status`, `/metrics`, alert rules) and what the journal stores as JSON.

Every key is always present (but `endpoints`, only on a run with named endpoints); a figure
that cannot be known yet is null. Times are seconds (`_s`), wall-clock times are Unix seconds
(`started_at`, `updated_at`, `at`, `since`), money is USD (`_usd`), shares are percent (`_pct`).
Two times are kept apart everywhere: `call_latency_s` is the API's answer time per call,
`job_time_s` a job's whole time, including its waits for the rate limiter and retry back-off
(see `anvil_cli.snapshot.metrics`).
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypedDict

SNAPSHOT_VERSION: Final = 2


class Counts(TypedDict):
    """Jobs of the whole run (a resumed run's earlier sessions included); the same keys as the
    journal's counts in `anvil status --json`."""

    total: int
    done: int
    succeeded: int
    failed: int
    pending: int  # not yet dispatched
    running: int  # held by workers (messages) or inside submitted batches


class Throughput(TypedDict):
    window_s: float  # the recent window of the rates below
    jobs_per_s: float
    requests_per_min: float
    jobs_per_s_overall: float  # this session, since it started
    eta_jobs_per_s: float  # the ETA's rate: the last `eta_window_s` whole seconds
    eta_window_s: int


class TimeSummary(TypedDict):
    count: int
    p50: float | None
    p95: float | None
    p99: float | None


class CallLatency(TimeSummary):
    recent_p95: float | None  # calls of the last 30 s: what the p95 alert watches


class CallLatencyWindow(TypedDict):
    """API call latency of the calls timed over the last `window_s` (`RunMetrics.call_latency_window`)."""

    window_s: float
    all: TimeSummary
    by_model: dict[str, TimeSummary]  # the models with a call in the window


class HistogramData(TypedDict):
    """A Prometheus histogram: `cumulative[i]` values at most `Histograms.bounds_s[i]`."""

    cumulative: list[int]
    count: int
    sum: float


class Histograms(TypedDict):
    bounds_s: list[float]
    call_latency: dict[str, HistogramData]  # by model
    job_time: dict[str, HistogramData]  # by model


class LastError(TypedDict):
    type: str
    status_code: int | None
    message: str | None


class LastToolError(TypedDict):
    seq: int  # the job's
    tool: str
    kind: str  # not_started, exit, killed, timeout, output_cut (engine/worker/tools/outcome.py)
    message: str


class Failure(TypedDict):
    seq: int
    model: str
    type: str
    status_code: int | None
    message: str
    at_s: float  # seconds into the session


class Errors(TypedDict):
    window_s: float  # the last minute (less at the start)
    error_rate_pct: float  # failed calls of all calls in the window
    attempts: int  # calls in the window
    failed_attempts: int  # failed calls in the window
    rate_limited_recent: int  # 429s in the window
    api_calls: int  # this session: calls answered (of finished jobs) and every failed call
    rate_limited: int  # this session
    retries: int  # this session: failed calls followed by another try
    by_type: dict[str, int]  # failed calls by error type, this session
    retries_by_type: dict[str, int]
    failures_by_type: dict[str, int]  # failed jobs by their final error
    last_failures: list[Failure]
    last_error: LastError | None  # the latest failed call
    tool_errors: int  # this session: failed tool calls of the jobs finished (`anvil status`: whole run)
    tool_errors_by_kind: dict[str, int]
    last_tool_error: LastToolError | None  # the latest failed tool call


class Agents(TypedDict):
    in_flight: int
    limit: int  # the scaler's (or POST /scale's) limit now
    min: int
    max: int
    utilisation_pct: float  # busy agents of the limit, at most 100
    draining: int  # jobs in flight above a lowered limit: they finish, none start until below it
    feedable: int | None  # calls the request limits could keep in flight (None: no request limit)
    capped_note: str | None  # set while max_agents, not a rate limit, is what holds the run back


class WorkerRow(TypedDict):
    id: int
    pid: int | None
    alive: bool
    jobs: int
    node: str | None
    waiting: bool  # a Ray actor not placed yet (no free resources on the cluster)


class Workers(TypedDict):
    count: int
    alive: int
    waiting: int  # started but not placed yet: waiting for cluster resources
    restarts: int
    list: list[WorkerRow]


class Queue(TypedDict):
    ready: int  # read from the journal, not yet dispatched
    pending: int  # not yet dispatched (the ready queue is part of it)
    growing: int  # the backlog when it grew over the last minute, else 0 (the queue alert's value)


class Dimension(TypedDict):
    rate_per_min: float | None  # the effective rate (lowered by the server's headers)
    configured_per_min: float | None
    capacity: float | None  # the bucket (burst size); null: no client-side limit
    level: float | None  # available now in the bucket
    reserved_in_flight: float  # reserved by calls in flight
    used_per_min: float  # recent use by the models drawing from the pool
    level_pct: float | None  # how full the bucket is
    in_use_pct: float | None  # the larger of recent use and how far the bucket is drawn down
    headroom_pct: float | None


class Pool(TypedDict):
    paused_for_s: float | None  # after a 429's retry-after
    binding: str | None  # the dimension closest to its limit, "paused", or null (idle, or ended)
    dimensions: dict[str, Dimension]


class _RefusedBy(TypedDict, total=False):
    # only while its endpoint is out for refusing calls: "authentication_error"... (a base class
    # with total=False: NotRequired is not seen under `from __future__ import annotations` on 3.11)
    reason: str


class Breaker(_RefusedBy):
    state: str  # closed | open | half_open
    failures: int
    retry_in_s: float | None


class Budget(TypedDict):
    spent_usd: float
    reserved_usd: float
    max_usd: float | None
    warn_usd: float | None


class ForecastRange(TypedDict):
    p10: float
    expected: float
    p90: float


class Cost(TypedDict):
    so_far_usd: float  # the whole run
    session_usd: float
    per_hour_usd: float  # the recent window
    average_per_hour_usd: float  # this session
    per_job_usd: float | None
    projected_total_usd: float | None  # spent + the remaining jobs at this run's cost per job so far
    projected_range_usd: ForecastRange | None  # its p10-p90 (policy/forecast.py, as `anvil plan`)


class Tokens(TypedDict):
    input: int
    output: int
    cache_read: int
    cache_write: int


Severity = Literal["high", "medium", "low"]


class Alert(TypedDict):
    name: str
    severity: Severity
    message: str
    value: float
    threshold: float
    since: float  # wall-clock time it was raised


class _OnNamedEndpoint(_RefusedBy, total=False):
    endpoint: str  # on a named endpoint only


class BreakerEvent(_OnNamedEndpoint):
    at: float  # wall-clock
    kind: Literal["breaker"]
    model: str
    state: str  # the state it moved to
    failures: int


class ScalingEvent(TypedDict):
    at: float
    kind: Literal["scaled"]
    agents_from: int
    agents_to: int
    busy: int | None
    limiter_pct: float | None


HistoryEvent = BreakerEvent | ScalingEvent


class BatchesState(TypedDict):
    submitted: int
    processing_requests: int
    ended: int


class EndpointStatus(TypedDict):
    """One named endpoint of the run (`endpoints:` in anvil.yaml): what it was paid and how it
    answered, over the whole run (the journal's figures: `Journal.spend_by_endpoint`), and the
    governor's pools and breakers on it (`anvil_cli.snapshot.endpoints`)."""

    cost_usd: float  # its settled calls' cost
    cost_share_pct: float  # of the cost of every named endpoint
    calls: int  # paid (answered) calls
    calls_share_pct: float  # of the paid calls of every named endpoint
    errors: int  # failed calls of the finished jobs, from their attempt logs
    rate_limited: int  # of those, answered 429
    pools: dict[str, Pool]  # by the pool's own key ("default:sonnet")
    breakers: dict[str, Breaker]  # by model
    open_breakers: int  # breakers open now: the models it refuses until a probe succeeds


class NamedEndpoints(TypedDict, total=False):
    """The one key a snapshot has only on a run with named endpoints: without them its JSON is
    what it always was."""

    endpoints: dict[str, EndpointStatus]  # by name


class ChecksGroup(TypedDict):
    """The checked answers of one model, variant or metadata value; `jobs` and `cost_usd` count
    every job of the group, checked or not (judges and re-asks included in the cost)."""

    checked: int  # finished with a checks record
    passed: int  # succeeded with every check passed
    pass_rate: float | None  # passed / checked (0-1)
    mean_score: float | None  # of the jobs' scores (each the mean of its checks' 0-1 scores)
    cost_usd: float
    jobs: int


class CheckStats(TypedDict):
    passed: int
    total: int
    mean_score: float | None


class Checks(TypedDict):
    """How a run's answers fared against their output schemas and checks
    (`anvil_cli.snapshot.checks.ChecksSummary`)."""

    checked: int
    passed: int
    pass_rate: float | None
    mean_score: float | None
    reasks: int  # answers asked again for not matching their schema
    reask_cost_usd: float
    judge_cost_usd: float  # in the run's cost too; shown apart
    per_check: dict[str, CheckStats]  # by check name ("schema": the output schema)
    by_model: dict[str, ChecksGroup]
    by_variant: dict[str, ChecksGroup]
    by: dict[str, dict[str, ChecksGroup]]  # metadata key (`checks.by`) -> its value -> group


class CheckedAnswers(TypedDict, total=False):
    """The key a snapshot has only once a job was checked (an output schema, checks). A live
    run's counts its sessions' results by model (`by_variant` and `by` empty: `by` names the
    keys); `anvil status` and `GET /status` give the journal's, by variant and metadata key too.
    Without checks the JSON is what it always was."""

    checks: Checks


class Snapshot(NamedEndpoints, CheckedAnswers):
    """The run at one tick."""

    version: int
    run_id: str
    batch_path: str
    mode: str  # messages | batches
    state: str  # running | paused | stopping | finished | stopped (`anvil status`: interrupted too)
    paused: bool
    started_at: float  # this session
    updated_at: float  # of these figures
    elapsed_s: float  # this session
    counts: Counts
    progress_pct: float
    eta_s: float | None  # remaining jobs / the recent completion rate; null if unknown or ended
    throughput: Throughput
    call_latency_s: CallLatency
    call_latency_by_model_s: dict[str, TimeSummary]
    job_time_s: TimeSummary
    job_time_by_model_s: dict[str, TimeSummary]
    histograms: Histograms
    errors: Errors
    agents: Agents
    workers: Workers
    queue: Queue
    queue_depth: int  # the same as queue.ready
    limits: dict[str, Pool]
    breakers: dict[str, Breaker]
    budget: Budget
    cost: Cost
    tokens: Tokens
    alerts: list[Alert]  # active now, most severe first
    history: list[HistoryEvent]  # recent breaker and scaling events, oldest first
    batches: BatchesState | None  # Message Batches mode only
    metrics: dict[str, Any]  # `RunMetrics.summary()`: the keys of `anvil run --json`'s figures
    governor: dict[str, Any]  # `GovernorView.to_dict()` of this tick (a budget alone in batches mode)
