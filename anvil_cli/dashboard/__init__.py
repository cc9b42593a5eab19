"""The live view of a run: the frame (`render`), the reporters (dashboard, plain lines, quiet)
and the conductor tick that feeds them (`RunMonitor`)."""

from anvil_cli.dashboard.monitor import RunMonitor, conductor_snapshot
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
    "PlainReporter",
    "QuietReporter",
    "Reporter",
    "RunMonitor",
    "conductor_snapshot",
    "make_reporter",
    "render",
]
