"""What the conductor does for every job, made cheaper without changing what it computes (issue
24, "Leaner"): the worker events pickle as their class and fields (`attempts.by_fields`), the
books answer "is this job held? how many are?" without a scan, and the figures' fast paths
count a result as the general path does."""

from __future__ import annotations

import copyreg
import math
import pickle
from dataclasses import fields
from types import SimpleNamespace
from typing import Any

import pytest
from anthropic.types import Usage as SdkUsage

from anvil_cli.engine.attempts import Attempt, ToolCall
from anvil_cli.engine.conductor.holdings import Holdings
from anvil_cli.engine.events import (
    CallFailed,
    CallSettled,
    Drain,
    Heartbeat,
    JobAbandoned,
    JobDone,
    ReadyRow,
    RunFatal,
    RunJob,
    Stop,
    ToolGroup,
    WorkerReady,
)
from anvil_cli.engine.outcomes import JobError, JobResult
from anvil_cli.engine.worker.sdk_message import usage_of
from anvil_cli.policy.checks.record import CheckRecord
from anvil_cli.snapshot.checks import ChecksTally
from anvil_cli.snapshot.histograms import LogHistogram
from anvil_cli.snapshot.metrics import RollingCounters


def _values() -> list[Any]:
    """One value of every type that crosses a worker's pipe, every field set off its default."""
    usage = usage_of(SimpleNamespace(usage=SdkUsage(
        input_tokens=10, output_tokens=5, cache_creation_input_tokens=3, cache_read_input_tokens=2,
        service_tier="standard")))  # fmt: skip
    tool = ToolCall("lookup", output="found", error="exit", message="status 3")
    attempt = Attempt(
        2, "claude-haiku-4-5", 529, latency_s=0.5, error_type="overloaded_error", message="busy",
        host="127.0.0.1:1", unreachable=True, wait_s=1.5, tools=(tool,), cache_hit=True, batch=True,
        endpoint="east", purpose="judge",
    )  # fmt: skip
    error = JobError("overloaded_error", "busy", 529)
    result = JobResult(
        7, False, "claude-haiku-4-5", 3, output="text", stop_reason="end_turn", usage=usage,
        cost_usd=0.25, error=error, attempt_log=(attempt, attempt), latency_s=2.0, started_at=1.0,
        finished_at=3.0, cache_key="k", endpoint="east", checks=CheckRecord(reasks=1),
    )  # fmt: skip
    return [
        usage, tool, attempt, error, result,
        RunJob(ReadyRow(1, 7, '{"id": "a"}', 2)), Drain(), Stop(),
        WorkerReady(1, 123, "127.0.0.1:8080"), CallFailed(1, 7, attempt), CallSettled(1, 7, 0.25, "east"),
        JobDone(1, result), JobAbandoned(1, 7, 3), RunFatal(1, 7, "budget", "spent", 3), Heartbeat(1),
        ToolGroup(1, 4242, True),
    ]  # fmt: skip


def _fields_of(value: Any) -> tuple[Any, ...]:
    """Every field, those left out of `==` (`Usage.keys`) included."""
    return tuple(getattr(value, f.name) for f in fields(value))


@pytest.mark.parametrize("value", _values(), ids=lambda v: type(v).__name__)
def test_a_value_crossing_a_pipe_pickles_as_its_class_and_fields_and_reads_back_the_same(value: Any) -> None:
    cls, args = value.__reduce_ex__(pickle.HIGHEST_PROTOCOL)[:2]
    assert cls is type(value) and cls is not copyreg.__newobj__  # rebuilt by __init__: no __setstate__
    assert args == _fields_of(value)
    for protocol in (2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        back = pickle.loads(pickle.dumps(value, protocol=protocol))
        assert type(back) is type(value) and back == value and _fields_of(back) == _fields_of(value)


def test_the_books_know_held_jobs_and_their_count_through_holds_releases_and_losses() -> None:
    held = Holdings()
    for worker in (0, 1):
        held.add_worker(worker)
        held.mark_ready(worker)
    rows = [ReadyRow(0, seq, "{}", 0) for seq in range(6)]
    for row in rows:
        worker = held.pick()
        assert worker is not None
        held.hold(worker, row)
    assert held.in_flight() == 6 and all(held.holds(r.seq) for r in rows)
    assert held.jobs_of(0) == held.jobs_of(1) == 3  # pick() balanced them
    assert held.release(0, 0) == rows[0] and held.release(0, 0) is None and held.release(1, 0) is None
    assert not held.holds(0) and held.in_flight() == 5
    lost = held.drop_worker(1)
    assert sorted(r.seq for r in lost) == [1, 3, 5]
    assert held.in_flight() == 2 and not any(held.holds(r.seq) for r in lost) and held.holds(2)
    assert held.release(1, 3) is None  # a late event of the lost worker
    assert sorted(r.seq for r in held.drop_all()) == [2, 4] and held.in_flight() == 0


def test_a_worker_ready_first_takes_its_share_of_the_first_wave_not_all_of_it() -> None:
    held = Holdings()
    for worker in (0, 1):
        held.add_worker(worker)
    held.mark_ready(0)  # the other is still starting
    taken = 0
    while (worker := held.pick(window=10)) is not None:
        held.hold(worker, ReadyRow(0, taken, "{}", 0))
        taken += 1
    assert taken == 5 and held.jobs_of(0) == 5  # the other half is kept for worker 1
    held.mark_ready(1)
    while (worker := held.pick(window=10)) is not None and held.in_flight() < 10:
        held.hold(worker, ReadyRow(0, taken, "{}", 0))
        taken += 1
    assert held.jobs_of(1) == 5
    assert held.pick(window=10) is not None  # all ready: no share kept (the caller bounds the window)


def test_a_result_without_checks_is_tallied_as_its_journal_row_is() -> None:
    fast, general = ChecksTally(), ChecksTally()
    for succeeded, model, cost in ((True, "haiku", 0.5), (False, "opus", None), (True, "", 0.25)):
        fast.add_result(succeeded, model, cost or 0.0, None)
        row = {"state": "succeeded" if succeeded else "failed", "model": model, "cost_usd": cost}
        general.add_row({**row, "checks": None})
    assert fast.summary() == general.summary()
    assert sorted(fast.by_model) == ["haiku", "opus"]


def test_a_histogram_counts_negative_and_unreadable_times_as_zero() -> None:
    hist = LogHistogram()
    for value in (-1.0, math.nan, 1e-9, 2.0):
        hist.add(value)
    assert (hist.count, hist.min, hist.max, hist.total) == (4, 0.0, 2.0, 2.0 + 1e-9)
    assert hist.percentile(50) == 0.0 and hist.percentile(100) == 2.0


def test_rolling_counters_add_up_within_a_second_and_apart_across_seconds() -> None:
    counters = RollingCounters(span_s=60.0)
    counters.add(10.2, {"jobs": 1, "cost_usd": 0.5})
    counters.add(10.7, {"jobs": 1, "requests:haiku": 2})
    counters.add(11.1, {"jobs": 1, "cost_usd": 0.25})
    assert counters.sums(11.5, 30) == {"jobs": 3, "cost_usd": 0.75, "requests:haiku": 2}
    assert counters.per_second("jobs", 12.0, 2) == 1.5
