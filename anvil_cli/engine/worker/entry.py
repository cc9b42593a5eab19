"""The target of worker processes: a trampoline so the conductor need not import the SDK.

Workers are forked from the fork server, which preloads (and warms) the real module.
"""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from anvil_cli.engine.worker.config import WorkerConfig

if TYPE_CHECKING:
    from anvil_cli.engine.governor_host.client import GovernorClient


def run_worker(cfg: WorkerConfig, governor: GovernorClient, inbox: Connection, events: Connection) -> None:
    from anvil_cli.engine.worker.loop import worker_main

    worker_main(cfg, governor, inbox, events)
