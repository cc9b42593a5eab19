"""The journal's jobs, directly: every state transition it offers (pending -> running ->
succeeded or failed, back to pending with attempts counted, the resume's re-queues), results
recorded once, and what the counts and totals read back. A real journal on `tmp_path`, jobs from
the batch loader and results from the producers the engine uses."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anthropic
import pytest

from anvil_cli.engine.journal.rows import JOB_STATES, JobState, RunState
from anvil_cli.engine.journal.spend_carry import EVENT as UNJOURNALED
from anvil_cli.engine.journal.store import (
    BATCH_ABANDONED,
    BATCH_ENDED,
    BATCH_INTENT,
    BATCH_SUBMITTED,
    FAILED,
    PENDING,
    RUN_RUNNING,
    RUNNING,
    SUCCEEDED,
    JobResult,
    Journal,
)
from anvil_cli.engine.modes.batches.results import succeeded_result
from anvil_cli.engine.outcomes import Usage
from anvil_cli.engine.result_cache import CachedResult, result_from_cache
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.loader import load_batch
from anvil_cli.policy.pricing.pricer import Pricer
from tests.engine_support import MODEL, write_jsonl_batch
from tests.sim_fixtures import (  # noqa: F401
    create,
    fixture_client,
    fixture_client_for,
    fixture_sim,
    fixture_sim_factory,
)


def _run(journal: Journal, tmp_path: Path, n: int = 3) -> str:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(n)])
    return journal.create_run(str(batch), "sha", load_batch(batch))


def _row(journal: Journal, run_id: str, seq: int) -> dict[str, Any]:
    (row,) = journal.job_rows(run_id, [seq])
    return row


def _paid(journal: Journal, run_id: str, seq: int, client: anthropic.Anthropic) -> JobResult:
    """A succeeded, paid result as the batches mode makes it from a (simulated) API answer."""
    return succeeded_result(_row(journal, run_id, seq), MODEL, create(client, "q"), Pricer.from_overrides())


@pytest.fixture(name="journal")
def fixture_journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / ".anvil") as journal:
        yield journal


def test_states_are_the_strings_stored(journal: Journal, tmp_path: Path) -> None:
    assert JOB_STATES == (PENDING, RUNNING, SUCCEEDED, FAILED) == tuple(JobState)
    assert [str(s) for s in JOB_STATES] == ["pending", "running", "succeeded", "failed"]
    assert [s.value for s in RunState] == ["running", "finished", "stopped", "interrupted"]
    run_id = _run(journal, tmp_path, 1)
    raw = journal.db.execute("SELECT state, typeof(state) FROM jobs WHERE run_id = ?", (run_id,)).fetchone()
    assert raw == ("pending", "text")
    assert journal.db.execute("SELECT state FROM runs").fetchone() == ("running",)
    run = journal.get_run(run_id)
    assert run is not None and run.state == RUN_RUNNING == "running"
    assert list(journal.counts(run_id)) == ["pending", "running", "succeeded", "failed"]
    assert all(type(k) is str for k in journal.counts(run_id))  # plain strings, as ever


def test_a_new_run_holds_all_its_jobs_pending(journal: Journal, tmp_path: Path) -> None:
    run_id = _run(journal, tmp_path, 3)
    run = journal.get_run(run_id)
    assert run is not None and run.total == 3
    assert journal.counts(run_id) == {"pending": 3, "running": 0, "succeeded": 0, "failed": 0}
    rows = list(journal.iter_results(run_id))
    assert [r["id"] for r in rows] == ["job-0000", "job-0001", "job-0002"]
    assert all(r["attempts"] == r["dispatches"] == 0 and r["started_at"] is None for r in rows)
    assert [Job.from_record(r["job"]) for r in rows] == list(load_batch(tmp_path / "b.jsonl"))
    assert journal.next_seq(run_id) == 3


def test_jobs_added_later_are_pending_and_counted(journal: Journal, tmp_path: Path) -> None:
    run_id = _run(journal, tmp_path, 2)
    more = write_jsonl_batch(tmp_path / "more.jsonl", ["x", "y"])
    extra = [replace(job, seq=2 + i, id=f"more-{i}") for i, job in enumerate(load_batch(more))]
    assert journal.add_jobs(run_id, extra) == 2
    run = journal.get_run(run_id)
    assert run is not None and run.total == 4
    assert journal.counts(run_id)["pending"] == 4
    assert journal.next_seq(run_id) == 4
    found = journal.job_by_id(run_id, "more-1")
    assert found is not None and found["seq"] == 3 and found["state"] == PENDING


def test_dispatch_marks_running_counts_it_and_keeps_the_first_start(journal: Journal, tmp_path: Path) -> None:
    run_id = _run(journal, tmp_path)
    journal.mark_dispatched(run_id, [0, 2], started_at=100.0)
    assert [r["state"] for r in journal.iter_results(run_id)] == [RUNNING, PENDING, RUNNING]
    journal.return_to_pending(run_id, [0])
    journal.mark_dispatched(run_id, [0], started_at=200.0)
    row = _row(journal, run_id, 0)
    assert (row["state"], row["dispatches"], row["started_at"]) == (RUNNING, 2, 100.0)
    assert journal.counts(run_id) == {"pending": 1, "running": 2, "succeeded": 0, "failed": 0}


def test_a_paid_success_is_recorded_with_its_answer(
    journal: Journal, tmp_path: Path, client: anthropic.Anthropic
) -> None:
    run_id = _run(journal, tmp_path)
    journal.mark_dispatched(run_id, [1], started_at=100.0)
    result = _paid(journal, run_id, 1, client)
    journal.record_result(run_id, result)
    row = _row(journal, run_id, 1)
    assert row["state"] == SUCCEEDED and row["model"] == MODEL
    assert result.usage is not None and row["usage"] == result.usage.to_json()
    assert row["output"] == result.output
    assert row["attempts"] == 1 and row["cost_usd"] == pytest.approx(result.cost_usd) and result.cost_usd > 0
    assert row["finished_at"] == result.finished_at and row["error"] is None
    assert journal.paid_job_costs(run_id) == [pytest.approx(result.cost_usd)]
    assert journal.totals(run_id) == {"cost_usd": pytest.approx(result.cost_usd), "attempts": 1.0}


def test_a_failure_is_recorded_with_its_error(journal: Journal, tmp_path: Path) -> None:
    run_id = _run(journal, tmp_path)
    journal.mark_dispatched(run_id, [0], started_at=100.0)
    journal.record_result(run_id, JobResult.failed_now(0, MODEL, "invalid_request_error", "too long"))
    row = _row(journal, run_id, 0)
    assert row["state"] == FAILED
    assert row["error"]["type"] == "invalid_request_error" and row["error"]["message"] == "too long"
    assert journal.counts(run_id) == {"pending": 2, "running": 0, "succeeded": 0, "failed": 1}
    assert journal.paid_job_costs(run_id) == []  # no call was made (attempts 0)


def test_a_pending_job_can_be_finished_without_a_dispatch(journal: Journal, tmp_path: Path) -> None:
    """A cache answer, or a job failed before it ran (a worker died under it too often)."""
    run_id = _run(journal, tmp_path)
    hit = CachedResult(MODEL, "cached", "end_turn", Usage(input_tokens=3, output_tokens=1), 0.5)
    journal.record_result(run_id, result_from_cache(0, hit))
    journal.record_result(run_id, JobResult.failed_now(1, MODEL, "worker_crashed", "died"))
    assert [r["state"] for r in journal.iter_results(run_id)] == [SUCCEEDED, FAILED, PENDING]
    assert _row(journal, run_id, 0)["cost_usd"] == 0.0  # the cache's answers cost nothing
    assert journal.cache_hits(run_id) == 1
    assert journal.paid_job_costs(run_id) == []


def test_a_result_counts_once(journal: Journal, tmp_path: Path, client: anthropic.Anthropic) -> None:
    run_id = _run(journal, tmp_path)
    journal.mark_dispatched(run_id, [0], started_at=100.0)
    first = _paid(journal, run_id, 0, client)
    journal.record_result(run_id, first)
    journal.record_result(run_id, JobResult.failed_now(0, MODEL, "api_error", "late duplicate"))
    journal.record_result(run_id, first)
    row = _row(journal, run_id, 0)
    assert row["state"] == SUCCEEDED and row["error"] is None
    assert row["attempts"] == 1 and row["cost_usd"] == pytest.approx(first.cost_usd)


def test_costs_journaled_call_by_call_are_not_added_again(
    journal: Journal, tmp_path: Path, client: anthropic.Anthropic
) -> None:
    run_id = _run(journal, tmp_path)
    journal.mark_dispatched(run_id, [0], started_at=100.0)
    journal.add_cost(run_id, 0, 0.25)
    journal.add_cost(run_id, 0, 0.5)
    journal.record_result(run_id, _paid(journal, run_id, 0, client), cost_journaled=True)
    assert _row(journal, run_id, 0)["cost_usd"] == pytest.approx(0.75)
    journal.add_event(run_id, UNJOURNALED, {"usd": 1.0})  # what a journal failure left unrecorded
    assert journal.totals(run_id) == {"cost_usd": pytest.approx(1.75), "attempts": 1.0}


def test_return_to_pending_requeues_unfinished_jobs_with_attempts_counted(
    journal: Journal, tmp_path: Path
) -> None:
    run_id = _run(journal, tmp_path)
    journal.mark_dispatched(run_id, [0, 1], started_at=100.0)
    journal.record_result(run_id, JobResult.failed_now(1, MODEL, "api_error", "x"))
    journal.return_to_pending(run_id, [0, 1, 2], attempts=1)  # 1 is finished: left alone
    rows = list(journal.iter_results(run_id))
    assert [r["state"] for r in rows] == [PENDING, FAILED, PENDING]
    assert [r["attempts"] for r in rows] == [1, 0, 1]  # a pending job's attempt counts too
    assert [r["dispatches"] for r in rows] == [1, 1, 0]
    journal.return_to_pending(run_id, [0])  # given up without a call: no attempt
    assert _row(journal, run_id, 0)["attempts"] == 1


def test_a_resume_requeues_what_was_running(journal: Journal, tmp_path: Path) -> None:
    run_id = _run(journal, tmp_path)
    journal.mark_dispatched(run_id, [0, 1], started_at=100.0)
    journal.record_result(run_id, JobResult.failed_now(1, MODEL, "api_error", "x"))
    assert journal.requeue_running(run_id) == 1
    row = _row(journal, run_id, 0)
    assert (row["state"], row["attempts"], row["dispatches"]) == (PENDING, 0, 1)
    assert journal.requeue_running(run_id) == 0
    assert _row(journal, run_id, 1)["state"] == FAILED


def test_retry_failed_requeues_failed_jobs_afresh_keeping_their_cost(
    journal: Journal, tmp_path: Path, client: anthropic.Anthropic
) -> None:
    run_id = _run(journal, tmp_path)
    journal.mark_dispatched(run_id, [0, 1], started_at=100.0)
    journal.add_cost(run_id, 0, 0.5)
    journal.record_result(run_id, JobResult.failed_now(0, MODEL, "api_error", "x"))
    journal.record_result(run_id, _paid(journal, run_id, 1, client))
    assert journal.requeue_failed(run_id) == 1
    row = _row(journal, run_id, 0)
    assert (row["state"], row["attempts"], row["dispatches"], row["error"]) == (PENDING, 0, 0, None)
    assert row["cost_usd"] == pytest.approx(0.5)
    assert _row(journal, run_id, 1)["state"] == SUCCEEDED


def test_batches_move_from_intent_to_submitted_to_ended(journal: Journal, tmp_path: Path) -> None:
    run_id = _run(journal, tmp_path, 4)
    with journal.transaction():
        n = journal.add_batch_intent(run_id, [0, 1], 2.5)
        journal.mark_dispatched(run_id, [0, 1], 100.0)
    assert n == 0 and journal.add_batch_intent(run_id, [2], 1.0) == 1
    journal.set_batch(run_id, 0, BATCH_SUBMITTED, "msgbatch_1")
    assert [(b.n, b.state, b.batch_id) for b in journal.batches(run_id)] == [
        (0, BATCH_SUBMITTED, "msgbatch_1"),
        (1, BATCH_INTENT, None),
    ]
    journal.set_batch(run_id, 0, BATCH_ENDED)  # the id stays
    assert [b.batch_id for b in journal.batches(run_id, (BATCH_ENDED,))] == ["msgbatch_1"]
    assert journal.batches(run_id, (BATCH_INTENT,))[0].seqs == [2]
    assert journal.known_batch_ids() == {"msgbatch_1"}
    assert [r["state"] for r in journal.job_rows(run_id, [1, 0])] == [RUNNING, RUNNING]


def test_an_abandoned_batch_returns_its_jobs_to_pending(journal: Journal, tmp_path: Path) -> None:
    run_id = _run(journal, tmp_path)
    with journal.transaction():
        n = journal.add_batch_intent(run_id, [0, 1], 2.5)
        journal.mark_dispatched(run_id, [0, 1], 100.0)
    with journal.transaction():  # as the batches mode does when the create was refused
        journal.set_batch(run_id, n, BATCH_ABANDONED)
        journal.return_to_pending(run_id, [0, 1])
    assert journal.batches(run_id)[0].state == BATCH_ABANDONED
    assert journal.counts(run_id)["pending"] == 3
    assert [r["dispatches"] for r in journal.iter_results(run_id)] == [1, 1, 0]
