"""The worker backend seam: where workers live and how the conductor talks to them.

A backend starts workers, delivers `WorkerCommand`s, hands back `WorkerEvent`s, and reports each
lost worker once (with whatever it sent before it went). It knows nothing of jobs, the journal
or the views: which worker holds which job is the conductor's business
(`engine/conductor/holdings.py`). `backends/local.py` runs workers as local processes,
`backends/ray_backend.py` as actors on a Ray cluster, `backends/stub.py` in this process as a
test scripts them; tests/backend_contract.py is what each of them must do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from anvil_cli.engine.events import WorkerCommand, WorkerEvent
from anvil_cli.engine.governor_host.client import GovernorClient
from anvil_cli.snapshot.state import WorkerInfo


@dataclass(frozen=True, slots=True)
class WorkerLost:
    """A worker that stopped without being asked: its last events still count."""

    worker: int
    exitcode: int | None
    last_events: list[WorkerEvent]


class Backend(Protocol):
    """What the conductor needs of any set of workers."""

    @property
    def restarts(self) -> int: ...  # workers started to replace lost ones

    def start(self, count: int) -> list[int]: ...  # the new workers' ids

    def spawn(self) -> int: ...  # one more worker (a replacement); its id

    def send(self, worker: int, command: WorkerCommand) -> bool: ...  # False: the worker is gone

    def poll(self, timeout_s: float) -> list[WorkerEvent]: ...  # waits up to timeout_s for the first

    def lost(self) -> list[WorkerLost]: ...  # each lost worker once; the backend forgets it

    def stop(self, timeout_s: float) -> list[WorkerEvent]: ...  # finish, exit; returns their last events

    def kill(self) -> list[WorkerEvent]: ...  # at once; what they had sent before

    def kill_worker(self, worker: int) -> None: ...  # one that stopped answering: lost() reports it

    def workers(self) -> list[WorkerInfo]: ...  # jobs=0: the backend does not track jobs

    def set_governor(self, governor: GovernorClient) -> None: ...  # a replacement: tell every worker


class Spawning:
    """What every backend does alike: start workers, and count those started as replacements."""

    _restarts = 0

    @property
    def restarts(self) -> int:
        return self._restarts

    def start(self, count: int) -> list[int]:
        return [self._spawn() for _ in range(count)]

    def spawn(self) -> int:
        self._restarts += 1
        return self._spawn()

    def _spawn(self) -> int:  # start one worker; its id
        raise NotImplementedError
