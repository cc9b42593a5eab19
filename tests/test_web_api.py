"""The web page's side of the API over real HTTP: the page and its files without the token, with
strict headers; GET /series from a real journal (samples written by the real Ticker) through the
real `RunControl`; everything else still behind the token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from anvil_cli.config.settings import Settings
from anvil_cli.engine.journal.store import Journal, journal_path
from anvil_cli.engine.ticker import Ticker
from anvil_cli.jobs.loader import load_batch
from anvil_cli.session.control import RunControl
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.series import MAX_POINTS
from anvil_cli.views.api.server import ApiServer
from anvil_cli.views.dashboard import QuietReporter, RunMonitor
from anvil_cli.views.web import ASSETS, CSP
from tests.engine_support import write_jsonl_batch
from tests.snapshot_support import T0, WALL0, engine_state
from tests.test_api_server import TOKEN, call

TICKS = 5


@pytest.fixture
def run(tmp_path: Path) -> tuple[Journal, str]:
    """A run with `TICKS` seconds of samples, journaled by the real Ticker."""
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b", "c"])
    journal = Journal.open(tmp_path / ".anvil")
    run_id = journal.create_run(str(batch), "sha", load_batch(batch))
    monitor = RunMonitor(Settings(), QuietReporter(), batch_path=str(batch), wall_clock=lambda: WALL0)
    ticker = Ticker(journal, run_id, monitor)
    metrics = RunMetrics(total=3, started_at=T0)
    for s in range(TICKS):
        ticker.tick(engine_state(run_id=run_id, in_flight=1), metrics, T0 + s)
    return journal, run_id


@pytest.fixture
def server(tmp_path: Path, run: tuple[Journal, str]) -> Iterator[ApiServer]:
    journal, run_id = run
    control = RunControl(journal_path(tmp_path / ".anvil"), run_id, agent_min=1, agent_max=10)
    with ApiServer(control, "127.0.0.1", 0, TOKEN).start() as srv:
        yield srv
    control.close()
    journal.close()


def test_the_page_and_its_files_need_no_token_and_carry_strict_headers(server: ApiServer) -> None:
    status, headers, body = call(server, "GET", "/", token=None)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"] == CSP
    assert "script-src 'self';" in CSP and "'unsafe-inline'" not in CSP and "connect-src 'self'" in CSP
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-cache"
    assert "<script>" not in body and "style=" not in body and "<style" not in body  # nothing inline
    assert 'id="login"' in body and "anvil-data" not in body
    for name in ASSETS:
        status, headers, text = call(server, "GET", f"/static/{name}", token=None)
        assert status == 200, name
        expected = "text/javascript" if name.endswith(".js") else "text/css"
        assert headers["Content-Type"].startswith(expected) and headers["Content-Security-Policy"] == CSP
        assert text
    assert call(server, "HEAD", "/", token=None)[0] == 200


def test_everything_else_still_needs_the_token(server: ApiServer) -> None:
    for method, path in [
        ("GET", "/status"),
        ("GET", "/series"),
        ("GET", "/static/nope.js"),  # only the page's own files are public
        ("GET", "/static"),
        ("GET", "/index.html"),
        ("POST", "/"),
        ("POST", "/pause"),
        ("GET", "/jobs/job-0000"),
    ]:
        status, headers, _ = call(server, method, path, token=None)
        assert status == 401, (method, path)
        assert headers["Content-Security-Policy"] == CSP and headers["Cache-Control"] == "no-store"
    assert call(server, "GET", "/series", token="wrong")[0] == 401
    assert call(server, "GET", "/static/nope.js")[0] == 404  # with the token: no such file


def test_series_returns_the_samples_after_since(server: ApiServer, run: tuple[Journal, str]) -> None:
    _, run_id = run
    status, headers, body = call(server, "GET", "/series")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert body["run_id"] == run_id and body["downsampled"] is False and body["now"] > 0
    times = [s["t"] for s in body["samples"]]
    assert times == [WALL0 + s for s in range(TICKS)]
    assert body["samples"][0]["counts"]["total"] == 3
    later = call(server, "GET", f"/series?since={WALL0 + 2}")[2]
    assert [s["t"] for s in later["samples"]] == [WALL0 + 3, WALL0 + 4]
    assert call(server, "GET", f"/series?since={WALL0 + 99}")[2]["samples"] == []
    fraction = call(server, "GET", f"/series?since={WALL0 + 3.5:.1f}")[2]
    assert [s["t"] for s in fraction["samples"]] == [WALL0 + 4]
    for bad in ("abc", "nan", "inf", "1e999", "", "%205", "1_000", "0x10"):
        status, _, body = call(server, "GET", f"/series?since={bad}")
        assert status == 400 and "since" in body["error"], bad


def test_a_long_series_is_thinned(server: ApiServer, run: tuple[Journal, str]) -> None:
    journal, run_id = run
    (last,) = journal.samples(run_id, since=WALL0 + TICKS - 1.5)
    with journal.transaction():
        for i in range(MAX_POINTS * 2):
            journal.add_sample(run_id, {**last, "t": WALL0 + 100 + i})  # type: ignore[typeddict-item]
    body = call(server, "GET", "/series")[2]
    assert body["downsampled"] is True and len(body["samples"]) <= MAX_POINTS
    assert body["samples"][-1]["t"] == WALL0 + 100 + MAX_POINTS * 2 - 1  # the latest is kept


def test_the_printed_address_carries_a_token_only_where_it_is_safe(tmp_path: Path) -> None:
    from anvil_cli.session.serve import Listening, _api_lines

    url, file = "http://127.0.0.1:8080", tmp_path / "api_token"
    generated = _api_lines(url, Listening("127.0.0.1", None, "gen-tok", True), file, False)  # type: ignore[arg-type]
    assert generated[0].startswith(f"dashboard at {url}/#token=gen-tok ") and str(file) in generated[0]
    assert generated[1] == f"control API at {url} (Authorization: Bearer <token>)"
    own = Listening("127.0.0.1", None, "my-secret-token", False)  # type: ignore[arg-type]
    assert _api_lines(url, own, file, True)[0] == f"dashboard at {url}/#token=my-secret-token"
    off_tty = _api_lines(url, own, file, False)  # CI logs, files: the user's own secret is not echoed
    assert "my-secret-token" not in "".join(off_tty) and off_tty[0].startswith(f"dashboard at {url}/ ")
