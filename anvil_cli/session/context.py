"""What one `anvil run` is composed of: the user's options (`RunOptions`), and once the run is
open in the journal, the `RunContext` every later step is handed (conduct, finish)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path

from anvil_cli.config.endpoint import Endpoint, named_endpoint, resolve_endpoints
from anvil_cli.config.endpoint_checks import batch_models, check_endpoints
from anvil_cli.config.provider_models import serves_all
from anvil_cli.config.settings import Settings
from anvil_cli.config.vault import environ_with_secrets
from anvil_cli.engine.journal.kind import RUN_KIND
from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.engine.ticker import Ticker
from anvil_cli.errors import Problem
from anvil_cli.jobs.stream import iter_batch
from anvil_cli.session.control import RunControl
from anvil_cli.session.simulated import SIM_API_KEY
from anvil_cli.snapshot.metrics import RunMetrics


@dataclass
class RunOptions:
    """What the user asked of `anvil run`."""

    batch: Path
    output: Path | None = None
    junit: Path | None = None  # --junit FILE: the run as a JUnit XML report (views/ci/junit.py)
    fresh: bool = False
    retry_failed: bool = False
    simulate: bool = False
    api_key: str | None = None
    mode: str = "messages"  # or "batches": the Message Batches API (engine/modes/batches/mode.py)
    serve: tuple[str, int] | None = None  # (host, port) of the HTTP control API
    command: list[str] | None = None  # the command line, recorded so `anvil status` can say how to resume
    kind: str = RUN_KIND  # or SAMPLE_KIND: `anvil plan --sample`'s run, never "the latest run"


@dataclass(frozen=True)
class RunContext:
    """One run, open in the journal: what conducting it and finishing it are handed."""

    settings: Settings
    opts: RunOptions
    journal: Journal
    run_id: str
    # where every worker's calls may go, local or remote (the simulator's once started), in the
    # order `endpoints:` lists them; one without that section
    endpoints: tuple[Endpoint, ...]
    processes: BaseContext  # the fork server's context, for local workers and the governor
    signals: SignalState
    metrics: RunMetrics  # this session's figures (the journal holds the whole run's)
    ticker: Ticker  # the snapshot, for the views, `anvil status` and the API
    control: RunControl | None  # the HTTP control API's commands (--serve), else None

    @property
    def endpoint(self) -> Endpoint:
        """The first endpoint: the one a run without `endpoints:` has."""
        return self.endpoints[0]


def run_endpoints(settings: Settings, opts: RunOptions) -> tuple[Endpoint, ...]:
    """Where calls go and with what credential (anvil_cli/config/endpoint.py); --simulate needs no
    key (each of `endpoints:` keeps its name, provider, region and models, with the simulator's
    key). Raises UsageError (exit 2) for what `anvil validate` also refuses: a credential variable
    not set, a provider's extra not installed, a routing model no endpoint serves."""
    if opts.simulate:
        if not settings.endpoints:
            return (Endpoint("http://127.0.0.1", "the embedded simulator", api_key=SIM_API_KEY),)
        endpoints = tuple(
            named_endpoint(i, entry, {}, simulated_key=SIM_API_KEY).at(
                "http://127.0.0.1", "the embedded simulator"
            )
            for i, entry in enumerate(settings.endpoints)
        )
    else:
        hint = " (or run with --simulate to rehearse offline)"
        endpoints = resolve_endpoints(settings, environ_with_secrets(), api_key=opts.api_key, hint=hint)
    check_endpoints(settings, endpoints, _models_asked(settings, opts, endpoints))
    return endpoints


def _models_asked(settings: Settings, opts: RunOptions, endpoints: tuple[Endpoint, ...]) -> set[str]:
    """The batch's models, when an endpoint serves only some (Bedrock, Vertex): one pass over
    the file (its problems are reported when its jobs are loaded, not here)."""
    if all(serves_all(e.provider) for e in endpoints) or not opts.batch.is_file():
        return set()
    models: Counter[str] = Counter()
    for item in iter_batch(opts.batch, extra_models=list(settings.prices)):
        if not isinstance(item, Problem):
            models[item.model] += 1
    return batch_models(models, settings)
