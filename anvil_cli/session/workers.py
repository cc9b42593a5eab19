"""Where a run's calls are made: the workers, the governor they ask and its keeper (`Workers`),
which `conduct` runs the conductor over. Local processes here; Ray actors in `ray_run.py`.
Each is a `with`: started, and however the run ends, stopped again."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from anvil_cli.engine.backend import Backend
from anvil_cli.engine.backends.local import LocalBackend
from anvil_cli.engine.governor_host.client import GovernorClient
from anvil_cli.engine.governor_host.link import GovernorHost
from anvil_cli.engine.governor_host.manager import GovernorKeeper
from anvil_cli.engine.process.forkserver import governor_context
from anvil_cli.engine.worker import trace_setup
from anvil_cli.engine.worker.config import WorkerConfig
from anvil_cli.engine.worker.tools.sandbox import sweep_after_run
from anvil_cli.session.context import RunContext

ConfigMaker = Callable[[int], WorkerConfig]


class Workers(NamedTuple):
    """The workers, the governor they ask, and what keeps the governor (restarts it if lost)."""

    backend: Backend
    governor: GovernorClient
    host: GovernorHost


def worker_configs(run: RunContext) -> ConfigMaker:
    """What each worker is started with, by its id: wherever it runs, the same settings, endpoint
    and run; and room for every agent (a worker may hold every slot if the others died)."""
    settings_json = run.settings.model_dump_json()
    agents = run.settings.scaling.agent_limit()
    otel_env = trace_setup.otel_environment()  # traces: the driver's variables decide (docs/telemetry.md)
    otel_env = otel_env if trace_setup.traced(dict(otel_env)) else ()
    link = trace_setup.run_link()

    def make_config(wid: int) -> WorkerConfig:
        return WorkerConfig(
            wid, settings_json, run.endpoints, agents, os.getpid(), run.run_id, otel_env, link
        )

    return make_config


@contextmanager
def local_workers(run: RunContext) -> Iterator[Workers]:
    """Worker processes from the fork server, and the governor in a process of its own (spawned:
    it makes no calls, so it is not forked from the fork server that holds the SDK)."""
    spent = run.journal.totals(run.run_id)["cost_usd"]
    keeper = GovernorKeeper(run.settings, governor_context(), spent, run.run_id)
    try:
        run.journal.add_event(run.run_id, "governor_started", {"pid": keeper.pid})
        yield Workers(LocalBackend(run.processes, worker_configs(run), keeper.client), keeper.client, keeper)
    finally:
        keeper.shutdown()
        sweep_after_run(run.run_id)  # what workers that died left: job directories, pids cgroups
