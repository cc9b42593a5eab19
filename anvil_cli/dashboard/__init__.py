"""The live view of a run: the frame (`render`), the reporters (dashboard, plain lines, quiet)
and the conductor tick that feeds them (`RunMonitor`)."""

from anvil_cli.dashboard.monitor import Observed, RunMonitor, engine_snapshot
from anvil_cli.dashboard.render import render
from anvil_cli.dashboard.reporter import (
    DashboardReporter,
    PlainReporter,
    QuietReporter,
    Reporter,
    make_reporter,
)

__all__ = [
    "DashboardReporter",
    "Observed",
    "PlainReporter",
    "QuietReporter",
    "Reporter",
    "RunMonitor",
    "engine_snapshot",
    "make_reporter",
    "render",
]
