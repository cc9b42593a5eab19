"""What every worker backend (`anvil_cli.engine.backend.Backend`) must do, as one scenario run
against each: the stub (engine/backends/stub.py), local processes (backends/local.py) and Ray
actors (backends/ray_backend.py, in tests/on_ray). Workers start and say they are ready; jobs
sent to them come back as typed events, each answered once by the worker it went to, its call
paid for before it is done; a worker lost is reported once and is gone; a replacement starts;
the rest stop when asked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import Settings
from anvil_cli.engine.backend import Backend, WorkerLost
from anvil_cli.engine.events import (
    CallFailed,
    CallSettled,
    Drain,
    JobDone,
    ReadyRow,
    RunJob,
    WorkerEvent,
    WorkerReady,
)
from anvil_cli.engine.journal.store import Journal
from anvil_cli.jobs.loader import load_batch
from tests.engine_support import write_config, write_jsonl_batch

WORKERS = 2
JOBS = 6
POLL_S = 0.5  # each poll waits at most this for the first event
MAX_POLLS = 240  # against a hang only: a backend that never answers fails, it does not hang


@dataclass
class Case:
    """A backend to put through the scenario, and the jobs to send it."""

    backend: Backend
    rows: list[ReadyRow]


def contract_settings(tmp_path: Path, base_url: str, **sections: object) -> Settings:
    config = write_config(tmp_path / "anvil.yaml", base_url, scaling={"workers": WORKERS}, **sections)
    return load_settings(config, env={})


def journal_rows(settings: Settings, tmp_path: Path) -> tuple[str, list[ReadyRow]]:
    """A run's pending jobs as the conductor's ready queue takes them from the journal."""
    batch = write_jsonl_batch(tmp_path / "batch.jsonl", [f"q{i}" for i in range(JOBS)])
    with Journal.open(settings.state_dir) as journal:
        run_id = journal.create_run(str(batch), "sha", load_batch(batch))
        return run_id, journal.pending_after(run_id, None, JOBS)


class Gathered:
    """Every event a backend hands back, polled until a condition holds (bounded)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.events: list[WorkerEvent] = []
        self.lost: list[WorkerLost] = []

    def until(self, holds: Callable[[], bool]) -> None:
        for _ in range(MAX_POLLS):
            if holds():
                return
            self.events += self.backend.poll(POLL_S)
            self.lost += self.backend.lost()
        raise AssertionError(f"not reached after {MAX_POLLS} polls; got {self.events!r}, lost {self.lost!r}")

    def ready(self) -> set[int]:
        return {e.worker for e in self.events if isinstance(e, WorkerReady)}

    def done(self) -> list[JobDone]:
        return [e for e in self.events if isinstance(e, JobDone)]


def check_backend_contract(case: Case) -> None:
    backend, rows = case.backend, case.rows
    ids = backend.start(WORKERS)
    assert len(set(ids)) == WORKERS and backend.restarts == 0
    seen = Gathered(backend)
    seen.until(lambda: seen.ready() >= set(ids))
    assert {w.id for w in backend.workers()} == set(ids)

    sent_to = {row.seq: ids[i % WORKERS] for i, row in enumerate(rows)}
    for row in rows:
        assert backend.send(sent_to[row.seq], RunJob(row))
    seen.until(lambda: len(seen.done()) >= len(rows))
    done = seen.done()
    assert sorted(d.result.seq for d in done) == sorted(sent_to)  # each job once
    assert all(d.result.succeeded for d in done), [d.result.error for d in done]
    assert {d.result.seq: d.worker for d in done} == sent_to  # by the worker it went to
    assert not [e for e in seen.events if isinstance(e, CallFailed)]
    for d in done:  # its call paid for, and said so before the job was done
        paid = [e for e in seen.events if isinstance(e, CallSettled) and e.seq == d.result.seq]
        assert len(paid) == 1 and paid[0].worker == d.worker
        assert seen.events.index(paid[0]) < seen.events.index(d)
        assert paid[0].cost_usd == d.result.cost_usd > 0

    gone = ids[0]
    backend.kill_worker(gone)
    seen.until(lambda: bool(seen.lost))
    assert [lost.worker for lost in seen.lost] == [gone]  # reported once
    assert backend.lost() == []
    assert gone not in {w.id for w in backend.workers()}
    assert not backend.send(gone, Drain())

    replacement = backend.spawn()
    assert replacement not in ids and backend.restarts == 1
    seen.until(lambda: replacement in seen.ready())
    assert {w.id for w in backend.workers()} == {*ids[1:], replacement}

    last = backend.stop(timeout_s=10.0)
    assert all(isinstance(e, WorkerEvent) for e in last)
    assert not [e for e in last if isinstance(e, JobDone)]  # nothing was left to answer
