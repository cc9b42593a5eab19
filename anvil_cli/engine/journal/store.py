"""The journal: SQLite (WAL) in the state dir, the source of truth for runs and jobs.

A job exists once its row is committed; a result counts once its row is committed.
Everything else (ready queue, dashboard, output file) is derived from it.

`Journal` is the one entry point; its methods live beside this module, one table or concern
each: connection.py (opening, schema, transactions), runs.py, jobs.py (state transitions),
queries.py (reads of jobs), events.py, batches.py, samples.py, owner.py, endpoints.py (spend by
named endpoint).
"""

from __future__ import annotations

from anvil_cli.engine.journal.batches import BatchesTable
from anvil_cli.engine.journal.connection import journal_path
from anvil_cli.engine.journal.endpoints import EndpointSpend, EndpointSpendTable
from anvil_cli.engine.journal.events import EventsTable
from anvil_cli.engine.journal.jobs import JobsTable
from anvil_cli.engine.journal.queries import JobQueries
from anvil_cli.engine.journal.rows import (
    BATCH_ABANDONED,
    BATCH_ENDED,
    BATCH_INTENT,
    BATCH_SUBMITTED,
    FAILED,
    JOB_STATES,
    PENDING,
    RUN_FINISHED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RUN_STOPPED,
    RUNNING,
    SUCCEEDED,
    BatchRow,
    JobResult,
    JobState,
    RunRow,
    RunState,
)
from anvil_cli.engine.journal.runs import RunsTable
from anvil_cli.engine.journal.samples import SamplesTable

__all__ = [  # the journal's vocabulary, defined in rows.py, used through this module
    "BATCH_ABANDONED",
    "BATCH_ENDED",
    "BATCH_INTENT",
    "BATCH_SUBMITTED",
    "FAILED",
    "JOB_STATES",
    "PENDING",
    "RUNNING",
    "RUN_FINISHED",
    "RUN_INTERRUPTED",
    "RUN_RUNNING",
    "RUN_STOPPED",
    "SUCCEEDED",
    "BatchRow",
    "EndpointSpend",
    "JobResult",
    "JobState",
    "Journal",
    "RunRow",
    "RunState",
    "journal_path",
]


class Journal(RunsTable, JobsTable, JobQueries, EventsTable, BatchesTable, SamplesTable, EndpointSpendTable):
    """One connection to the journal; use from a single thread."""
