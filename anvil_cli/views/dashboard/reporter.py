"""How `anvil run` shows progress: a Rich Live dashboard on a terminal, plain lines elsewhere.

Every reporter has the same four methods: `start()`, `update(snapshot)` (once a second, from the
conductor's tick), `alert(change)` and `stop()`. None of them reads the clock or raises.
"""

from __future__ import annotations

from typing import Protocol

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.segment import Segment

from anvil_cli.alerts.rules import AlertChange, format_change
from anvil_cli.config.settings import Settings
from anvil_cli.snapshot.types import Snapshot
from anvil_cli.timefmt import local_iso
from anvil_cli.views.dashboard.render import render, waiting
from anvil_cli.views.progress import PlainProgress

REFRESH_PER_S = 4.0
QUIET_SEVERITIES = frozenset({"low"})  # off a terminal, their ALERT lines need --verbose


class Reporter(Protocol):
    """What `anvil run` tells about the run while it runs."""

    def start(self) -> None: ...
    def update(self, snapshot: Snapshot) -> None: ...
    def alert(self, change: AlertChange) -> None: ...
    def note(self, line: str) -> None: ...  # a progress line of the run's own (e.g. a batch submitted)
    def stop(self) -> None: ...


class QuietReporter:
    """`--quiet`: nothing while running (the summary is printed by the command)."""

    def start(self) -> None:
        pass

    def update(self, snapshot: Snapshot) -> None:
        pass

    def alert(self, change: AlertChange) -> None:
        pass

    def note(self, line: str) -> None:
        pass

    def stop(self) -> None:
        pass


class PlainReporter:
    """CI and pipes (`--no-dashboard`, not a terminal): a line every `interval_s`, and a line when
    a high or medium alert is raised or cleared (low ones, informational, only with `verbose`)."""

    def __init__(self, console: Console, interval_s: float, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.progress = PlainProgress(console, interval_s)

    def start(self) -> None:
        pass

    def update(self, snapshot: Snapshot) -> None:
        self.progress.snapshot(snapshot)

    def alert(self, change: AlertChange) -> None:
        if change.alert["severity"] in QUIET_SEVERITIES and not self.verbose:
            return
        self.console.print(format_change(change, local_iso(change.at)), markup=False, soft_wrap=True)

    def note(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        pass


class _Frozen:
    """A renderable rendered once per width: Live's refreshes between updates cost almost nothing."""

    def __init__(self, inner: RenderableType) -> None:
        self.inner = inner
        self._cache: tuple[int, list[list[Segment]]] | None = None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self._cache is None or self._cache[0] != options.max_width:
            self._cache = (options.max_width, console.render_lines(self.inner, options, pad=False))
        new_line = Segment.line()
        for line in self._cache[1]:
            yield from line
            yield new_line


class DashboardReporter:
    """The live dashboard on stderr: Rich `Live`, refreshed `REFRESH_PER_S` times a second,
    rebuilt only when a snapshot arrives; the last frame stays on screen (`transient=False`)."""

    def __init__(self, console: Console, refresh_per_s: float = REFRESH_PER_S) -> None:
        self.console = console
        self.live = Live(
            _Frozen(waiting()),
            console=console,
            refresh_per_second=refresh_per_s,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=True,
        )
        self._started = False

    def start(self) -> None:
        if not self._started:
            self.live.start()
            self._started = True

    def update(self, snapshot: Snapshot) -> None:
        self.start()
        self.live.update(_Frozen(render(snapshot, self.console.width)))

    def alert(self, change: AlertChange) -> None:
        # printed above the live frame: the history of alerts stays in the scrollback
        self.console.print(format_change(change, local_iso(change.at)), markup=False, soft_wrap=True)

    def note(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)  # above the live frame

    def stop(self) -> None:
        if self._started:
            self.live.stop()
            self._started = False


def make_reporter(
    settings: Settings,
    *,
    tty: bool,
    quiet: bool,
    no_dashboard: bool,
    console: Console,
    verbose: bool = False,
) -> Reporter:
    """The reporter for `anvil run`: quiet, the dashboard (a terminal), or plain lines."""
    if quiet:
        return QuietReporter()
    if tty and not no_dashboard and console.is_terminal and not console.is_dumb_terminal:
        return DashboardReporter(console)
    return PlainReporter(console, settings.run.progress_interval_s, verbose=verbose)
