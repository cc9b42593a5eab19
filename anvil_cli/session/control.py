"""The HTTP API's Controller for one run (`views.api.controller`): commands in, snapshots out.

The driver's loop (the conductor, or the batches driver) is single-threaded and owns its
journal connection. The API thread never touches the driver's state: it reads the journal
(where the driver stores its snapshot each second) through its own connection, and posts
control commands (`engine.commands`) to a queue the driver applies each turn (`engine.control`).
Jobs added through the API are validated here and committed to the journal before `add_jobs`
returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any, Final

from anvil_cli.engine.commands import (
    CommandQueue,
    ControlCommand,
    DrainRun,
    JobsAdded,
    Pause,
    Resume,
    Scale,
    SetBreaker,
)
from anvil_cli.engine.journal.store import PENDING, Journal
from anvil_cli.engine.output import result_line
from anvil_cli.errors import BacklogFull, InputError, Problem, TooManyJobs, UnknownModel
from anvil_cli.jobs.fields import ModelSet
from anvil_cli.jobs.job import Job
from anvil_cli.jobs.jobspec import JobFactory, is_message_batch_request
from anvil_cli.jobs.toolspec import COMMAND_KEY
from anvil_cli.policy.pricing.table import AUTO
from anvil_cli.snapshot.series import MAX_POINTS
from anvil_cli.snapshot.status import status_json
from anvil_cli.views.api.bodies import MAX_JOBS_PER_REQUEST

API_SOURCE = "POST /jobs"
NO_COMMANDS = (
    f"tools with {COMMAND_KEY} cannot be added through the API: the API must not run commands on this host"
)


# POST /jobs: jobs waiting are held in the journal, not memory (a request holds at most
# MAX_JOBS_PER_REQUEST: see views.api.bodies).
MAX_PENDING_JOBS: Final = 1_000_000


class RunControl:
    """Implements the HTTP API's Controller for one run."""

    def __init__(
        self,
        journal_path: Path,
        run_id: str,
        *,
        agent_min: int,
        agent_max: int,
        extra_models: Collection[str] = (),
    ) -> None:
        self.run_id = run_id
        self.agent_min = agent_min
        self.agent_max = agent_max
        self.commands = CommandQueue()
        self._journal = Journal(journal_path, create=False)  # never re-create: see securefile
        self._lock = threading.Lock()
        self._models = ModelSet.build(extra_models)

    def close(self) -> None:
        with self._lock:
            self._journal.close()

    # -- Controller ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The same JSON as `anvil status --json` for this run (the snapshot the driver stored
        this second, with the journal's counts and history)."""
        with self._lock:
            return dict(status_json(self._journal, self.run_id))

    def series(self, since: float | None) -> dict[str, Any]:
        with self._lock:
            kept, count = self._journal.thinned_samples(self.run_id, MAX_POINTS, since)
        thinned = len(kept) < count
        return {"run_id": self.run_id, "now": time.time(), "samples": kept, "downsampled": thinned}

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._journal.job_by_id(self.run_id, job_id)
        if row is None:
            return None
        return {**result_line(row), "state": row["state"], "priority": row["job"].get("priority")}

    def add_jobs(self, raw_jobs: list[dict[str, Any]]) -> list[str]:
        if len(raw_jobs) > MAX_JOBS_PER_REQUEST:
            raise TooManyJobs(
                f"at most {MAX_JOBS_PER_REQUEST:,} jobs per request (got {len(raw_jobs):,});"
                " send them in several requests"
            )
        with self._lock:
            pending = self._journal.counts(self.run_id)[PENDING]
            if pending + len(raw_jobs) > MAX_PENDING_JOBS:
                raise BacklogFull(
                    f"{pending:,} jobs are waiting already (at most {MAX_PENDING_JOBS:,}); try again"
                    " when some have run"
                )
            jobs = self._validate(raw_jobs)
            self._journal.add_jobs(self.run_id, jobs)  # durable before we answer
        self.commands.put(JobsAdded(len(jobs)))
        return [job.id for job in jobs]

    def _validate(self, raw_jobs: list[dict[str, Any]]) -> list[Job]:
        factory = JobFactory(self._models)
        start = self._journal.next_seq(self.run_id)
        factory.seq = start
        jobs: list[Job] = []
        problems: list[Problem] = []
        for n, raw in enumerate(raw_jobs, start=1):
            problems.extend(_command_tools(raw, n))
            if is_message_batch_request(raw):
                made = factory.message_batch_job(raw, file=API_SOURCE, line=n)
            else:
                made = factory.anvil_job(raw, file=API_SOURCE, line=n)
            if isinstance(made, Job):
                jobs.append(made)
            else:
                problems.extend(made)
        problems.extend(self._clashes(jobs))
        if problems:
            raise InputError(problems)
        return jobs

    def _clashes(self, jobs: list[Job]) -> list[Problem]:
        return [
            Problem(API_SOURCE, f"a job with id {job.id!r} is already in this run", job_id=job.id, field="id")
            for job in jobs
            if self._journal.job_by_id(self.run_id, job.id) is not None
        ]

    def scale(self, agents: int) -> int:
        if not self.agent_min <= agents <= self.agent_max:
            raise ValueError(f"agents must be between {self.agent_min} and {self.agent_max}, got {agents}")
        self.commands.put(Scale(agents))
        return agents

    def set_breaker(self, model: str, state: str) -> None:
        if state not in ("open", "closed"):
            raise ValueError(f"breaker state must be 'open' or 'closed', got {state!r}")
        problem = self._models.problem(model) if model != AUTO else "'auto' is not a model"
        if problem is not None:  # a typo must not report success (nor create a phantom breaker)
            raise UnknownModel(problem)
        self.commands.put(SetBreaker(model, state))

    def pause(self) -> None:
        self.commands.put(Pause())

    def resume(self) -> None:
        self.commands.put(Resume())

    def drain(self) -> None:
        self.commands.put(DrainRun())

    # -- CommandSource (the driver's side) -----------------------------------------------------

    def pending_commands(self) -> list[ControlCommand]:
        return self.commands.pending_commands()


def _command_tools(raw: Any, line: int) -> list[Problem]:
    """A problem for each tool of a job added through the API that names a local command."""
    if not isinstance(raw, dict):
        return []
    batch_shape = is_message_batch_request(raw)
    holder = raw.get("params") if batch_shape else raw
    tools = holder.get("tools") if isinstance(holder, dict) else None
    if not isinstance(tools, list):
        return []
    job_id = raw.get("custom_id") if batch_shape else raw.get("id")
    prefix = "params.tools" if batch_shape else "tools"
    return [
        Problem(
            API_SOURCE,
            NO_COMMANDS,
            line=line,
            job_id=job_id if isinstance(job_id, str) else None,
            field=f"{prefix}[{i}].{COMMAND_KEY}",
        )
        for i, tool in enumerate(tools)
        if isinstance(tool, dict) and COMMAND_KEY in tool
    ]
