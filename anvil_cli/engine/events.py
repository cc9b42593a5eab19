"""The protocol between the conductor and its workers, whatever backend carries it: frozen
values, matched with `match` on either side. Nothing else crosses the seam.

Conductor -> worker (`WorkerCommand`):
  RunJob(row)            run this job (the journal already says it is running)
  Drain()                the run is stopping: no new calls, no retries, no waiting
  Stop()                 finish what you hold, then exit
  NewGovernor(governor)  the governor was lost and started again: ask this one from now on

Worker -> conductor (`WorkerEvent`):
  WorkerReady            the worker can take jobs (and the API host it calls)
  CallFailed             one API attempt failed (live error counts, last failure)
  CallSettled            one API call was paid for: its cost is journaled at once, so the
                         budget holds across a crash even for multi-turn tool jobs
  JobDone                a job finished (succeeded or failed for good); its calls' costs
                         came before it as CallSettled
  JobAbandoned           given up as the run stops: back to pending
  RunFatal               no request can succeed (auth, spend cap, budget, lost governor)
  Heartbeat              the worker's event loop is turning (every `HEARTBEAT_S`): one that
                         stops (SIGSTOP, a wedged loop) is killed and replaced
  ToolGroup              a tool call's process group started or ended (the conductor kills
                         the groups of a worker that dies, so no tool outlives its worker)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from anvil_cli.engine.attempts import Attempt, by_fields
from anvil_cli.engine.outcomes import JobResult

if TYPE_CHECKING:
    from anvil_cli.engine.governor_host.client import GovernorClient


class ReadyRow(NamedTuple):
    """A pending job as the ready queue holds it, in dispatch order (priority, then seq). The job
    stays the journal's JSON text until a worker decodes it: it is never re-encoded on the way."""

    priority: int
    seq: int
    job_json: str
    dispatches: int


# -- conductor -> worker ----------------------------------------------------------------------


@by_fields
@dataclass(frozen=True, slots=True)
class RunJob:
    row: ReadyRow


@by_fields
@dataclass(frozen=True, slots=True)
class Drain:
    pass


@by_fields
@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class NewGovernor:
    governor: GovernorClient  # a Manager proxy (pickled over the pipe) or a cluster handle


WorkerCommand = RunJob | Drain | Stop | NewGovernor


# -- worker -> conductor ----------------------------------------------------------------------


@by_fields
@dataclass(frozen=True, slots=True)
class WorkerReady:
    worker: int
    pid: int
    api_host: str  # host:port this worker calls (from the driver's endpoint)


@by_fields
@dataclass(frozen=True, slots=True)
class CallFailed:
    worker: int
    seq: int
    info: Attempt  # its attempt log entry


@by_fields
@dataclass(frozen=True, slots=True)
class CallSettled:
    worker: int
    seq: int
    cost_usd: float
    endpoint: str = ""  # the named endpoint that was paid ("" : the run's only endpoint)


@by_fields
@dataclass(frozen=True, slots=True)
class JobDone:
    worker: int
    result: JobResult


@by_fields
@dataclass(frozen=True, slots=True)
class JobAbandoned:
    worker: int
    seq: int
    attempts: int


@by_fields
@dataclass(frozen=True, slots=True)
class RunFatal:
    worker: int
    seq: int
    reason: str  # authentication_error, spend_limit, budget, governor_lost, ...
    message: str
    attempts: int


HEARTBEAT_S = 1.0


@by_fields
@dataclass(frozen=True, slots=True)
class Heartbeat:
    worker: int


@by_fields
@dataclass(frozen=True, slots=True)
class ToolGroup:
    worker: int
    pgid: int
    running: bool


WorkerEvent = (
    WorkerReady | CallFailed | CallSettled | JobDone | JobAbandoned | RunFatal | ToolGroup | Heartbeat
)
