"""Workers the conductor loses: a dead one (its last events still count), a silent one (killed),
one that dies before it starts, and a job that keeps killing its workers (a poison job). The
jobs a lost worker held go back to pending, in the journal and in this run's queue, and a
replacement worker starts."""

from __future__ import annotations

import json

from anvil_cli.engine.backend import WorkerLost
from anvil_cli.engine.conductor.recording import EventRecording
from anvil_cli.engine.events import Drain, ReadyRow
from anvil_cli.engine.journal.store import JobResult

MAX_STILLBORN_WORKERS = 5  # then stop the run rather than respawn forever
MAX_CRASHES_PER_JOB = 3  # a job whose worker died under it this often fails instead (a poison job)


class WorkerLosses(EventRecording):
    """Lost and silent workers, and the jobs they held."""

    def _reap_workers(self) -> None:
        self._kill_silent_workers()
        for lost in self.backend.lost():
            self._record(lost.last_events)  # what it sent before dying counts
            self._on_lost(lost)

    def _kill_silent_workers(self) -> None:
        """A worker that stopped answering (SIGSTOP, a wedged loop) is killed; `lost()` then
        re-queues its jobs and starts a replacement, as for any dead worker."""
        for wid, silent_s in self.watch.silent(self.clock()):
            silent = {"worker": wid, "silent_s": round(silent_s, 1)}
            self.journal.add_event(self.run_id, "worker_silent", silent)
            self.backend.kill_worker(wid)

    def _on_lost(self, lost: WorkerLost) -> None:
        self.watch.forget(lost.worker)  # its tool calls die with it
        was_ready = self.held.is_ready(lost.worker)
        self.gov.release_owner(lost.worker)
        rows = self.held.drop_worker(lost.worker)
        seqs = [row.seq for row in rows]
        self._crashes.update(seqs)
        for seq in seqs:
            self.metrics.cost_usd += self._spent.pop(seq, 0.0)
        with self.journal.transaction():
            self.journal.return_to_pending(self.run_id, seqs, attempts=1)
            died = {"worker": lost.worker, "exitcode": lost.exitcode, "jobs": len(seqs)}
            self.journal.add_event(self.run_id, "worker_died", died)
        wid = self.backend.spawn()
        self.held.add_worker(wid)
        if self._draining:
            self.backend.send(wid, Drain())
        self._note_stillborn(was_ready, lost.exitcode)
        if not self._stopping():
            for row in rows:
                self.ready.push_back(row._replace(dispatches=row.dispatches + 1))

    def _note_stillborn(self, was_ready: bool, exitcode: int | None) -> None:
        if not was_ready:
            self._stillborn += 1
        if self._stillborn > MAX_STILLBORN_WORKERS:
            self.stop_run(
                "workers_failing",
                f"worker processes keep dying before they start (last exit code {exitcode}); "
                "see the errors above",
            )

    def _fail_poison(self, row: ReadyRow) -> None:
        """A job whose worker died under it too often is failed rather than retried forever."""
        model = str(json.loads(row.job_json).get("model"))
        message = f"the worker process died while running this job {self._crashes[row.seq]} times"
        result = JobResult.failed_now(row.seq, model, "worker_crashed", message)
        self.journal.record_result(self.run_id, result)
        self.metrics.on_result(result, self.clock())
