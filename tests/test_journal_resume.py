"""What the journal tells a run that picks up where another stopped: which run (by batch, id or
prefix, ordinary runs before plan samples), who holds it (pid and when that process started),
and which jobs are left, in dispatch order (priority, then batch order)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.engine.journal.kind import SAMPLE_KIND, SAMPLES_DIR
from anvil_cli.engine.journal.store import (
    FAILED,
    PENDING,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RUN_STOPPED,
    JobResult,
    Journal,
)
from anvil_cli.engine.process.lifeline import process_start
from anvil_cli.jobs.loader import load_batch
from tests.engine_support import MODEL, write_jobs, write_jsonl_batch

PRIOS = ["low", "normal", "critical", "high", "normal", "critical", "low", "high"]
DISPATCH_ORDER = ["j2", "j5", "j3", "j7", "j1", "j4", "j0", "j6"]  # priority, then seq


@pytest.fixture(name="journal")
def fixture_journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / ".anvil") as journal:
        yield journal


def _prioritised_run(journal: Journal, tmp_path: Path) -> str:
    jobs = [{"id": f"j{i}", "prompt": f"p{i}", "priority": p} for i, p in enumerate(PRIOS)]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    return journal.create_run(str(batch), "sha", load_batch(batch))


def _ids(journal: Journal, run_id: str, rows: list[Any]) -> list[str]:
    by_seq = {r["seq"]: r["id"] for r in journal.iter_results(run_id)}
    return [by_seq[row.seq] for row in rows]


def _resume(journal: Journal, run_id: str, *, retry_failed: bool = False) -> int:
    """What `anvil run` does to a run it resumes, before it reads the pending jobs."""
    run = journal.get_run(run_id)
    assert run is not None and journal.claim_run(run_id, previous_pid=run.pid)
    if retry_failed:
        journal.requeue_failed(run_id)
    return journal.requeue_running(run_id)


def test_pending_jobs_come_in_dispatch_order(journal: Journal, tmp_path: Path) -> None:
    run_id = _prioritised_run(journal, tmp_path)
    rows = journal.pending_after(run_id, None, 100)
    assert _ids(journal, run_id, rows) == DISPATCH_ORDER
    assert [(r.priority, r.dispatches) for r in rows[:3]] == [(0, 0), (0, 0), (1, 0)]


def test_pending_jobs_are_read_page_by_page_strictly_after_the_last(journal: Journal, tmp_path: Path) -> None:
    run_id = _prioritised_run(journal, tmp_path)
    seen: list[Any] = []
    after = None
    while page := journal.pending_after(run_id, after, 3):
        assert len(page) <= 3
        seen += page
        after = (page[-1].priority, page[-1].seq)
    assert _ids(journal, run_id, seen) == DISPATCH_ORDER


def test_a_resumed_run_sees_what_was_left_and_not_what_finished(journal: Journal, tmp_path: Path) -> None:
    run_id = _prioritised_run(journal, tmp_path)
    first = journal.pending_after(run_id, None, 4)  # j2 j5 j3 j7 dispatched
    journal.mark_dispatched(run_id, [r.seq for r in first], 100.0)
    journal.record_result(run_id, JobResult.failed_now(first[0].seq, MODEL, "api_error", "x"))  # j2
    journal.record_result(run_id, JobResult.failed_now(first[1].seq, MODEL, "worker_crashed", "x"))
    journal.set_run_state(run_id, RUN_INTERRUPTED, stop_reason="interrupted", ended=True)
    # the process died: j3 and j7 are still `running`
    assert journal.counts(run_id) == {"pending": 4, "running": 2, "succeeded": 0, "failed": 2}

    assert _resume(journal, run_id) == 2
    rows = journal.pending_after(run_id, None, 100)
    assert _ids(journal, run_id, rows) == ["j3", "j7", "j1", "j4", "j0", "j6"]
    assert [r.dispatches for r in rows[:3]] == [1, 1, 0]  # the interrupted ones ran once already
    finished = [r["id"] for r in journal.iter_results(run_id) if r["state"] == FAILED]
    assert finished == ["j2", "j5"]
    run = journal.get_run(run_id)
    assert run is not None
    assert (run.state, run.stop_reason, run.ended_at, run.pid) == (RUN_RUNNING, None, None, os.getpid())


def test_a_resume_with_retry_failed_sees_the_failed_jobs_again(journal: Journal, tmp_path: Path) -> None:
    run_id = _prioritised_run(journal, tmp_path)
    journal.mark_dispatched(run_id, [2, 5], 100.0)
    journal.record_result(run_id, JobResult.failed_now(2, MODEL, "api_error", "x"))
    journal.set_run_state(run_id, RUN_STOPPED, stop_reason="budget", ended=True)
    assert _resume(journal, run_id, retry_failed=True) == 1
    assert _ids(journal, run_id, journal.pending_after(run_id, None, 100)) == DISPATCH_ORDER
    assert journal.counts(run_id)[PENDING] == len(PRIOS)


def test_a_run_records_its_owner_and_only_one_process_takes_it_over(journal: Journal, tmp_path: Path) -> None:
    run_id = _prioritised_run(journal, tmp_path)
    run = journal.get_run(run_id)
    assert run is not None and run.pid == os.getpid()
    assert journal.owner_start(run_id) == process_start(os.getpid())
    journal.db.execute("UPDATE runs SET pid = 999999999, pid_start = 'gone' WHERE id = ?", (run_id,))
    assert not journal.claim_run(run_id, previous_pid=12345)  # someone else's read: not ours to take
    assert journal.owner_start(run_id) == "gone"
    assert journal.claim_run(run_id, previous_pid=999999999)
    assert journal.owner_start(run_id) == process_start(os.getpid())  # stamped again, with the pid
    assert journal.owner_start("no-such-run") is None


def test_a_run_held_by_a_dead_process_or_this_one_does_not_block_a_new_one(
    journal: Journal, tmp_path: Path
) -> None:
    run_id = _prioritised_run(journal, tmp_path)
    batch = str(tmp_path / "b.jsonl")
    assert journal.create_run(batch, "sha", []) != run_id  # this process's own: no refusal
    journal.db.execute("UPDATE runs SET pid = 999999999 WHERE id = ?", (run_id,))
    assert journal.create_run(batch, "sha", [])  # a dead owner: no refusal either


def test_latest_run_is_the_newest_ordinary_run_not_a_plan_sample(journal: Journal, tmp_path: Path) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a"])
    sample = write_jsonl_batch(tmp_path / "s.jsonl", ["a"])
    run_id = journal.create_run(str(batch), "sha", load_batch(batch))
    sample_id = journal.create_run(str(sample), "sha", load_batch(sample), kind=SAMPLE_KIND)
    journal.db.execute("UPDATE runs SET created_at = created_at + 1 WHERE id = ?", (sample_id,))
    latest = journal.latest_run()
    assert latest is not None and latest.id == run_id
    of_sample = journal.latest_run(str(sample))  # by its batch it is found
    assert of_sample is not None and of_sample.id == sample_id
    assert [r.id for r in journal.list_runs()] == [sample_id, run_id]
    assert [r.id for r in journal.list_runs(limit=1)] == [sample_id]


def test_an_older_journal_gains_the_kind_its_plan_samples_had(tmp_path: Path) -> None:
    state = tmp_path / ".anvil"
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a"])
    (tmp_path / SAMPLES_DIR).mkdir()
    sample = write_jsonl_batch(tmp_path / SAMPLES_DIR / "s.jsonl", ["a"])
    with Journal.open(state) as journal:
        run_id = journal.create_run(str(batch), "sha", load_batch(batch))
        sample_id = journal.create_run(str(sample), "sha", load_batch(sample))
        journal.db.execute("UPDATE runs SET created_at = created_at + 1 WHERE id = ?", (sample_id,))
        journal.db.execute("ALTER TABLE runs DROP COLUMN kind")  # as written before runs had a kind
    with Journal.open(state) as journal:
        latest = journal.latest_run()
        assert latest is not None and latest.id == run_id
        kinds = dict(journal.db.execute("SELECT id, kind FROM runs").fetchall())
        assert kinds == {run_id: "run", sample_id: SAMPLE_KIND}


def test_a_run_is_found_by_id_or_unique_prefix(journal: Journal, tmp_path: Path) -> None:
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a"])
    for n, run_id in enumerate(["20260101-000000-abc111", "20260101-000000-abc222"]):
        made = journal.create_run(str(batch), "sha", load_batch(batch))
        journal.db.execute("UPDATE runs SET id = ?, created_at = ? WHERE id = ?", (run_id, n, made))
    found = journal.find_run("20260101-000000-abc2")
    assert found is not None and found.id == "20260101-000000-abc222"
    found = journal.find_run("20260101-000000-abc111")
    assert found is not None and found.id == "20260101-000000-abc111"
    assert journal.find_run("20260101-000000-abc") is None  # ambiguous
    assert journal.run_ids_matching("20260101") == ["20260101-000000-abc222", "20260101-000000-abc111"]
    assert journal.run_ids_matching("20260101", limit=1) == ["20260101-000000-abc222"]
    assert journal.find_run("%") is None and journal.run_ids_matching("2026010_") == []  # taken literally


def test_a_stopped_runs_state_reason_and_summary_are_kept_until_it_is_taken_over(
    journal: Journal, tmp_path: Path
) -> None:
    run_id = _prioritised_run(journal, tmp_path)
    journal.set_run_state(run_id, RUN_STOPPED, stop_reason="budget", summary={"cost_usd": 1.5}, ended=True)
    run = journal.get_run(run_id)
    assert run is not None and (run.state, run.stop_reason, run.summary) == (
        RUN_STOPPED,
        "budget",
        {"cost_usd": 1.5},
    )
    assert run.ended_at is not None
    journal.save_snapshot(run_id, {"done": 0})
    assert journal.claim_run(run_id, previous_pid=run.pid)
    again = journal.get_run(run_id)
    assert again is not None
    assert (again.state, again.stop_reason, again.ended_at) == (RUN_RUNNING, None, None)
    assert again.summary == {"cost_usd": 1.5} and again.snapshot == {"done": 0}


def test_open_existing_is_none_until_a_journal_is_written(tmp_path: Path) -> None:
    state = tmp_path / ".anvil"
    assert Journal.open_existing(state) is None
    with pytest.raises(FileNotFoundError):
        Journal(state / "journal.sqlite", create=False)
    Journal.open(state).close()
    journal = Journal.open_existing(state)
    assert isinstance(journal, Journal)
    with journal:
        assert journal.list_runs() == []
