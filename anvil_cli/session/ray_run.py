"""A run's workers on a Ray cluster (`--backend ray`): connect, start (or join) the governor
actor, conduct with the `RayBackend`, and leave the cluster as found (a shared governor stays).
The conductor, the journal and the results are the same as with local workers."""

from __future__ import annotations

import os
from typing import Any

import ray

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.settings import Settings
from anvil_cli.engine.backends.ray_backend import RayBackend
from anvil_cli.engine.conductor.core import Conductor
from anvil_cli.engine.governor_host.ray_actor import RayGovernorHost
from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.engine.ticker import Ticker
from anvil_cli.engine.worker.config import WorkerConfig
from anvil_cli.errors import UsageError
from anvil_cli.session.control import RunControl
from anvil_cli.snapshot.metrics import RunMetrics


def connect(settings: Settings) -> None:
    """Join the cluster at `ray.address` (or start Ray here when it is None)."""
    try:
        ray.init(
            address=settings.ray.address,
            namespace=settings.ray.namespace,
            log_to_driver=False,
            include_dashboard=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = settings.ray.address or "a new local Ray instance"
        raise UsageError(f"cannot reach the Ray cluster at {where}: {exc}") from None


def conduct_on_ray(
    settings: Settings,
    journal: Journal,
    run_id: str,
    endpoint: Endpoint,
    metrics: RunMetrics,
    signals: SignalState,
    ticker: Ticker,
    control: RunControl | None,
) -> RunEnd:
    connect(settings)
    host: RayGovernorHost | None = None
    backend: RayBackend | None = None
    try:
        host = RayGovernorHost(settings, run_id, journal.totals(run_id)["cost_usd"])
        journal.add_event(run_id, "governor_started", {"name": host.current_name, "shared": host.shared})
        settings_json = settings.model_dump_json()
        agents = settings.scaling.agent_limit()

        def make_config(wid: int) -> WorkerConfig:
            return WorkerConfig(wid, settings_json, endpoint, agents, os.getpid(), run_id)

        backend = RayBackend(settings, make_config, host.client)
        gov: Any = host.client
        conductor = Conductor(
            settings,
            journal,
            run_id,
            backend,
            gov,
            signals,
            metrics,
            ticker,
            control,
            host,
            endpoint=endpoint,
        )
        return conductor.run()
    finally:
        if backend is not None:
            backend.kill()
        if host is not None:
            host.shutdown()
        ray.shutdown()
