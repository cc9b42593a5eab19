"""The target of worker processes: a trampoline so the conductor need not import the SDK.

Workers are forked from the fork server, which preloads (and warms) the real module.
"""

from __future__ import annotations

from typing import Any

from anvil_cli.engine.worker_config import WorkerConfig


def run_worker(cfg: WorkerConfig, governor: Any, inbox: Any, events: Any) -> None:
    from anvil_cli.engine.worker import worker_main

    worker_main(cfg, governor, inbox, events)
