"""A run's workers on a Ray cluster (`--backend ray`): connect, start (or join) the governor
actor, hand `conduct` the `RayBackend`, and leave the cluster as found (a shared governor stays).
The conductor, the journal and the results are the same as with local workers (`workers.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import ray

from anvil_cli.config.settings import Settings
from anvil_cli.engine.backends.ray_backend import RayBackend
from anvil_cli.engine.governor_host.ray_actor import RayGovernorHost
from anvil_cli.errors import UsageError
from anvil_cli.session.context import RunContext
from anvil_cli.session.workers import Workers, worker_configs


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


@contextmanager
def ray_workers(run: RunContext) -> Iterator[Workers]:
    """Worker actors and the governor actor; afterwards the workers are killed, the run's own
    governor too (a shared one stays), and Ray is left."""
    connect(run.settings)
    host: RayGovernorHost | None = None
    backend: RayBackend | None = None
    try:
        host = RayGovernorHost(run.settings, run.run_id, run.journal.totals(run.run_id)["cost_usd"])
        started = {"name": host.current_name, "shared": host.shared}
        run.journal.add_event(run.run_id, "governor_started", started)
        backend = RayBackend(run.settings, worker_configs(run), host.client)
        yield Workers(backend, host.client, host)
    finally:
        if backend is not None:
            backend.kill()
        if host is not None:
            host.shutdown()
        ray.shutdown()
