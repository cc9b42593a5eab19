"""What one `anvil run` is composed of: the user's options (`RunOptions`), and once the run is
open in the journal, the `RunContext` every later step is handed (conduct, finish)."""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path

from anvil_cli.config.endpoint import Endpoint, named_endpoint, resolve_endpoints
from anvil_cli.config.endpoint_checks import check_endpoints
from anvil_cli.config.settings import Settings
from anvil_cli.config.vault import environ_with_secrets
from anvil_cli.engine.journal.kind import RUN_KIND
from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.engine.ticker import Ticker
from anvil_cli.session.control import RunControl
from anvil_cli.session.simulated import SIM_API_KEY
from anvil_cli.snapshot.metrics import RunMetrics


@dataclass
class RunOptions:
    """What the user asked of `anvil run`."""

    batch: Path
    output: Path | None = None
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
    check_endpoints(settings, endpoints)
    return endpoints
