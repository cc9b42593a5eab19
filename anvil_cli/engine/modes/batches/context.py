"""What a `--mode batches` run is given: its settings, journal, client, figures and steering,
and the clock, sleep and jitter it waits with (fakes in tests)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anthropic

from anvil_cli.config.settings import Settings
from anvil_cli.engine.commands import CommandSource
from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.engine.result_cache import ResultCache
from anvil_cli.engine.ticker import Ticker
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.snapshot.metrics import RunMetrics


def _silent(_line: str) -> None:
    pass


@dataclass
class BatchesContext:
    """What a batches-mode run needs."""

    settings: Settings
    journal: Journal
    run_id: str
    client: anthropic.Anthropic
    metrics: RunMetrics
    signals: SignalState
    ticker: Ticker
    control: CommandSource | None = None
    say: Callable[[str], None] = _silent  # progress lines, through the reporter (nothing with -q)
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random  # jitter of the backoff after an API error
    clock: Callable[[], float] = time.monotonic  # the metrics' clock, for the ticks
    endpoint: str = ""  # the `endpoints:` name the batches go to (endpoint.py); "": the only one
    pricer: Pricer = field(init=False)
    cache: ResultCache | None = field(init=False)

    def __post_init__(self) -> None:
        self.pricer = Pricer.from_settings(self.settings)
        self.cache = ResultCache(self.settings.state_dir) if self.settings.cache.enabled else None
