"""The live view of a run: the frame (`render`), the reporters (dashboard, plain lines, quiet)
and the views' side of a tick (`RunMonitor`)."""

from anvil_cli.snapshot.monitor import Backlog, Observed, RunMonitor
from anvil_cli.views.dashboard.render import render
from anvil_cli.views.dashboard.reporter import (
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
