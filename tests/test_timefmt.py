"""One date format for people, everywhere: ISO 8601 in the local zone, to the second
(`anvil_cli.timefmt.local_iso`), in the progress and ALERT lines, the dashboard's history and
`anvil status`; and no view formats a time any other way."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from anvil_cli.alerts.rules import AlertEngine
from anvil_cli.config.settings import Alerts
from anvil_cli.timefmt import local_iso
from anvil_cli.views.dashboard.render import render
from anvil_cli.views.dashboard.reporter import PlainReporter
from anvil_cli.views.progress import snapshot_line
from tests.snapshot_support import WALL0, snapshot

WINTER = 1_796_526_900.0  # 2026-12-06T03:15:00Z
SUMMER = 1_782_875_700.0  # 2026-07-01T03:15:00Z
ISO_LOCAL = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
PACKAGE = Path(__file__).resolve().parent.parent / "anvil_cli"


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """`zone(name)` makes `name` this process's local zone (TZ and tzset), undone afterwards."""

    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("name", "wall", "expected"),
    [
        ("UTC", WINTER, "2026-12-06T03:15:00+00:00"),
        ("Asia/Kolkata", WINTER, "2026-12-06T08:45:00+05:30"),
        ("America/New_York", WINTER, "2026-12-05T22:15:00-05:00"),
        ("America/New_York", SUMMER, "2026-06-30T23:15:00-04:00"),  # daylight saving time
        ("Australia/Adelaide", WINTER, "2026-12-06T13:45:00+10:30"),
        ("Australia/Adelaide", SUMMER, "2026-07-01T12:45:00+09:30"),
        ("UTC", WINTER + 0.999, "2026-12-06T03:15:00+00:00"),  # to the second, not rounded up
    ],
)
def test_local_iso_in_the_local_zone(zone: object, name: str, wall: float, expected: str) -> None:
    zone(name)  # type: ignore[operator]
    assert local_iso(wall) == expected


def test_no_time_is_a_dash() -> None:
    assert local_iso(None) == "-" and local_iso(0) == "-" and local_iso(None, "never") == "never"


def test_progress_and_alert_lines_are_stamped_with_it(zone: object) -> None:
    zone("Asia/Kolkata")  # type: ignore[operator]
    console = Console(file=io.StringIO(), width=400, record=True)
    reporter = PlainReporter(console, interval_s=10.0)
    snap = snapshot(now=170.0)
    reporter.update(snap)
    (change, *_) = AlertEngine(Alerts(queue_depth=10)).evaluate(snapshot(growing=11), WINTER)
    reporter.alert(change)
    progress, alert = console.export_text().splitlines()
    assert progress == f"[{local_iso(snap['updated_at'])}] {snapshot_line(snap)}"
    assert progress.startswith(f"[{local_iso(WALL0 + 70.0)}]") and re.match(rf"\[{ISO_LOCAL}\] ", progress)
    assert alert.startswith("[2026-12-06T08:45:00+05:30] ALERT [high] queue_depth: ")


def test_the_dashboard_s_history_lines_use_it(zone: object) -> None:
    zone("America/New_York")  # type: ignore[operator]
    scaled = {"at": WINTER, "kind": "scaled", "from": 20, "to": 14, "busy": 18}
    console = Console(file=io.StringIO(), width=120, record=True)
    console.print(render(snapshot(history=(scaled,)), 120))
    assert "2026-12-05T22:15:00-05:00 " in console.export_text()


VIEWS_EXEMPT = {
    "engine/journal/runs.py",  # the run id (20261205-031500-abc123): an id, not a view
    "engine/result_cache.py",  # a damaged cache set aside: cache.sqlite.corrupt-20261205T031500-…
    "sim/rate_limits.py",  # the simulated API's rate-limit headers: RFC 3339 UTC, as Anthropic's
    "sim/batches/store.py",  # the simulated Message Batches API's timestamps, as Anthropic's
    "views/ci/junit.py",  # JUnit's `timestamp`: the XSD's xs:dateTime in UTC without a zone, for CI systems
    "timefmt.py",
}


def test_no_view_formats_a_time_its_own_way() -> None:
    """Every time a person reads goes through `local_iso` (Python) or `isoLocal` (the web page)."""
    own = re.compile(r"strftime|localtime\(|isoformat\(|toLocale(Date|Time)String|toLocaleString\([^)]*hour")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in sorted([*PACKAGE.rglob("*.py"), *PACKAGE.glob("views/web/*.js")])
        if str(path.relative_to(PACKAGE)) not in VIEWS_EXEMPT
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if own.search(line)
    ]
    assert offenders == []
