"""The live view of a run: the frame (`render`), the reporters (dashboard, plain lines, quiet)
and the views' side of a tick (`RunMonitor`)."""

from anvil_cli.dashboard.monitor import Backlog, Observed, RunMonitor
from anvil_cli.dashboard.render import render
from anvil_cli.dashboard.reporter import (
    DashboardReporter,
    PlainReporter,
    QuietReporter,
    Reporter,
    make_reporter,
)

__all__ = [
    "Backlog",
    "DashboardReporter",
    "Observed",
    "PlainReporter",
    "QuietReporter",
    "Reporter",
    "RunMonitor",
    "make_reporter",
    "render",
]
