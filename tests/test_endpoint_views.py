"""Cost and calls by named endpoint (`endpoints:`), from the journal to every view: a conductor
built as a run builds it, over the stub backend (engine/backends/stub.py), records what its
workers report (`CallSettled.endpoint`, attempt logs naming their endpoint); then `anvil status`
(text and --json), `GET /status`, `/metrics`, the report and the results file are read from that
journal and every figure is compared with sums over the journal's own rows. A run without named
endpoints shows none of it, byte for byte as before."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from anvil_cli.commands.status import render_status
from anvil_cli.config.load import load_settings
from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.backends.stub import StubBackend, answered
from anvil_cli.engine.conductor.core import Conductor
from anvil_cli.engine.events import CallFailed, CallSettled, JobDone, ReadyRow, WorkerEvent
from anvil_cli.engine.governor_host.manager import GovernorService
from anvil_cli.engine.journal.store import Journal, journal_path
from anvil_cli.engine.outcomes import JobError, JobResult, Usage
from anvil_cli.engine.output import iter_result_lines
from anvil_cli.engine.process.signals import SignalState
from anvil_cli.engine.run_end import RunEnd
from anvil_cli.engine.ticker import Ticker
from anvil_cli.jobs.loader import load_batch
from anvil_cli.policy.governor.view import BreakerView, DimensionView, GovernorView, PoolView, endpoint_key
from anvil_cli.session.control import RunControl
from anvil_cli.snapshot.build import build_snapshot
from anvil_cli.snapshot.endpoints import endpoints_of
from anvil_cli.snapshot.metrics import RunMetrics
from anvil_cli.snapshot.state import EngineState
from anvil_cli.snapshot.status import status_json
from anvil_cli.views.api.prom import render
from anvil_cli.views.dashboard import QuietReporter, RunMonitor
from anvil_cli.views.dashboard.render import render as render_frame
from anvil_cli.views.endpoints import render_endpoints
from anvil_cli.views.report import render_html, report_data
from tests.engine_support import invoke_cli, read_results, write_config, write_jobs

N_JOBS = 12
T0 = 1000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Host:
    """The real governor in this process (as tests/test_conductor.py's InProcessHost), never lost."""

    def __init__(self, settings_json: str) -> None:
        self.client = GovernorService(settings_json)
        self.generation = 0

    @property
    def pid(self) -> int | None:
        return None

    def lost(self) -> bool:
        return False

    def restart(self, spent_usd: float, last_view: GovernorView) -> Any:
        raise AssertionError("the governor is never lost here")


def _model(row: ReadyRow) -> str:
    return str(json.loads(row.job_json)["model"])


def _done(worker: int, row: ReadyRow, calls: list[Attempt], costs: list[float], ok: bool) -> JobDone:
    model = _model(row)
    last = calls[-1]
    error = None if ok else JobError(last.error_type or "error", last.message or "", last.status_code)
    result = JobResult(
        seq=row.seq,
        succeeded=ok,
        model=model,
        attempts=len(calls),
        output="ok" if ok else None,
        stop_reason="end_turn" if ok else None,
        usage=Usage(input_tokens=10, output_tokens=5) if ok else None,
        cost_usd=sum(costs),
        error=error,
        attempt_log=tuple(calls),
        latency_s=0.1,
        endpoint=last.endpoint,
    )
    return JobDone(worker, result)


def by_endpoint(worker: int, row: ReadyRow) -> list[WorkerEvent]:
    """What a worker of a pool of three endpoints reports, varied by job: answered on org-a; a
    429 on org-b then answered on org-a (failover); two paid calls (a tool turn) on bedrock-east;
    refused for good on org-b. Each paid call settled on its endpoint, each refusal reported."""
    model, seq = _model(row), row.seq
    kind = seq % 4

    def ok(n: int, endpoint: str) -> Attempt:
        return Attempt(n, model, 200, latency_s=0.1, endpoint=endpoint)

    def refused(n: int, endpoint: str, status: int, etype: str) -> Attempt:
        return Attempt(n, model, status, latency_s=0.1, error_type=etype, message=etype, endpoint=endpoint)

    cost = 0.001 * (seq + 1)
    if kind == 0:
        calls = [ok(1, "org-a")]
        return [CallSettled(worker, seq, cost, endpoint="org-a"), _done(worker, row, calls, [cost], True)]
    if kind == 1:
        limited = refused(1, "org-b", 429, "rate_limit_error")
        calls = [limited, ok(2, "org-a")]
        return [
            CallFailed(worker, seq, limited),
            CallSettled(worker, seq, cost, endpoint="org-a"),
            _done(worker, row, calls, [cost], True),
        ]
    if kind == 2:
        calls = [ok(1, "bedrock-east"), ok(2, "bedrock-east")]
        return [
            CallSettled(worker, seq, cost, endpoint="bedrock-east"),
            CallSettled(worker, seq, 2 * cost, endpoint="bedrock-east"),
            _done(worker, row, calls, [cost, 2 * cost], True),
        ]
    bad = refused(1, "org-b", 400, "invalid_request_error")
    return [CallFailed(worker, seq, bad), _done(worker, row, [bad], [], False)]


@dataclass
class Ran:
    journal: Journal
    run_id: str
    state_dir: Path
    end: RunEnd
    config: Path


def _run(tmp_path: Path, script: Any) -> Iterator[Ran]:
    """A whole run of N_JOBS jobs over the stub backend, each job doing what `script` says."""
    jobs = [{"id": f"j{i}", "prompt": f"q{i}"} for i in range(N_JOBS)]
    batch = write_jobs(tmp_path / "batch.jsonl", jobs)
    config = write_config(
        tmp_path / "anvil.yaml",
        "http://127.0.0.1:9",  # never called: the stub's workers call no API
        scaling={"workers": 2, "max_agents": 4, "max_concurrent_jobs": 4, "min_agents": 1},
        budget={"max_usd": 100.0},
    )
    settings = load_settings(config, env={})
    clock = FakeClock()
    with Journal.open(settings.state_dir) as journal:
        run_id = journal.create_run(str(batch), "sha", load_batch(batch))
        host = Host(settings.model_dump_json())
        backend = StubBackend(script, governor=host.client)
        control = RunControl(journal_path(settings.state_dir), run_id, agent_min=1, agent_max=4)
        monitor = RunMonitor(settings, QuietReporter(), batch_path=str(batch), mono_clock=clock)
        conductor = Conductor(
            settings,
            journal,
            run_id,
            backend,
            host.client,
            SignalState(),
            RunMetrics(total=N_JOBS, started_at=clock()),
            Ticker(journal, run_id, monitor),
            control,
            host,
            clock=clock,
        )
        try:
            conductor.start()
            for _ in range(60):
                if conductor.over():
                    break
                conductor.step()
                clock.now += 0.5
            assert conductor.over(), "the run did not end"
            end = conductor.finish()
            yield Ran(journal, run_id, settings.state_dir, end, config)
        finally:
            control.close()


@pytest.fixture
def ran(tmp_path: Path) -> Iterator[Ran]:
    yield from _run(tmp_path, by_endpoint)


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Ran]:
    """A run without named endpoints (the stub's own answers: no endpoint anywhere)."""
    yield from _run(tmp_path, lambda worker, row: answered(worker, row, 0.002))


def _from_rows(journal: Journal, run_id: str) -> dict[str, dict[str, float]]:
    """The expected figures, summed straight from the journal's rows: spend from endpoint_spend,
    failed calls and 429s from the jobs' stored attempt logs."""
    out: dict[str, dict[str, float]] = {}
    for name, cost, calls in journal.db.execute(
        "SELECT endpoint, SUM(cost_usd), SUM(calls) FROM endpoint_spend WHERE run_id = ? GROUP BY endpoint",
        (run_id,),
    ):
        out[name] = {"cost_usd": cost, "calls": calls, "errors": 0, "rate_limited": 0}
    for (log,) in journal.db.execute("SELECT attempts_json FROM jobs WHERE run_id = ?", (run_id,)):
        for a in json.loads(log or "[]"):
            if a["status_code"] != 200:
                e = out.setdefault(
                    a["endpoint"], {"cost_usd": 0.0, "calls": 0, "errors": 0, "rate_limited": 0}
                )
                e["errors"] += 1
                e["rate_limited"] += a["status_code"] == 429
    return out


def test_the_journal_keeps_each_paid_call_on_its_endpoint(ran: Ran) -> None:
    db, run_id = ran.journal.db, ran.run_id
    assert not ran.end.stopped_early
    # every job's cost is the sum of its rows by endpoint: nothing paid is left out
    per_job = dict(db.execute("SELECT seq, cost_usd FROM jobs WHERE run_id = ?", (run_id,)).fetchall())
    by_seq: dict[int, float] = {}
    for seq, cost in db.execute("SELECT seq, cost_usd FROM endpoint_spend WHERE run_id = ?", (run_id,)):
        by_seq[seq] = by_seq.get(seq, 0.0) + cost
    assert {s: pytest.approx(c) for s, c in by_seq.items() if c} == {s: c for s, c in per_job.items() if c}
    spend = ran.journal.spend_by_endpoint(run_id)
    expected = _from_rows(ran.journal, run_id)
    assert list(spend) == ["bedrock-east", "org-a", "org-b"]
    assert {k: dict(v) for k, v in spend.items()} == {k: pytest.approx(v) for k, v in expected.items()}
    # the script's own arithmetic: 3 jobs of each kind
    seqs = {k: [s for s in range(N_JOBS) if s % 4 == k] for k in range(4)}
    assert spend["org-a"]["calls"] == len(seqs[0]) + len(seqs[1])
    assert spend["bedrock-east"]["calls"] == 2 * len(seqs[2])
    assert spend["org-b"] == {"cost_usd": 0.0, "calls": 0, "errors": 6, "rate_limited": 3}
    assert sum(s["cost_usd"] for s in spend.values()) == pytest.approx(ran.journal.totals(run_id)["cost_usd"])


def test_spend_by_endpoint_survives_reopening_the_journal(ran: Ran) -> None:
    before = ran.journal.spend_by_endpoint(ran.run_id)
    with Journal.open(ran.state_dir) as again:  # what a resumed run opens
        assert again.spend_by_endpoint(ran.run_id) == before
        again.add_cost(ran.run_id, 0, 0.5, "org-b")  # the resumed run pays on org-b
        assert again.spend_by_endpoint(ran.run_id)["org-b"]["cost_usd"] == pytest.approx(0.5)
        assert again.spend_by_endpoint(ran.run_id)["org-b"]["calls"] == 1


def test_an_older_journal_opens_and_resumes(tmp_path: Path) -> None:
    """A journal written before the table: read-only it has no endpoint spend; opened to write
    (a resume) it gains the table and records the spend."""
    state = tmp_path / ".anvil"
    state.mkdir()
    with Journal.open(state) as journal:
        batch = write_jobs(tmp_path / "b.jsonl", [{"id": "a", "prompt": "q"}])
        run_id = journal.create_run(str(batch), "sha", load_batch(batch))
        journal.add_cost(run_id, 0, 0.25)
    db = sqlite3.connect(journal_path(state))
    db.execute("DROP TABLE endpoint_spend")  # as an older Anvil wrote it
    db.commit()
    db.close()
    reader = Journal.open_existing(state)
    assert reader is not None
    with reader:
        assert reader.spend_by_endpoint(run_id) == {}
        assert "endpoints" not in status_json(reader, run_id)
    with Journal.open(state) as journal:
        journal.add_cost(run_id, 0, 0.5, "org-a")
        assert journal.spend_by_endpoint(run_id) == {
            "org-a": {"cost_usd": 0.5, "calls": 1, "errors": 0, "rate_limited": 0}
        }
        assert journal.totals(run_id)["cost_usd"] == pytest.approx(0.75)


def test_status_json_shows_each_endpoint_from_the_journal(ran: Ran) -> None:
    st = status_json(ran.journal, ran.run_id)
    expected = _from_rows(ran.journal, ran.run_id)
    endpoints = st["endpoints"]
    assert list(endpoints) == sorted(expected)
    total_cost = sum(e["cost_usd"] for e in expected.values())
    total_calls = sum(e["calls"] for e in expected.values())
    for name, e in endpoints.items():
        want = expected[name]
        assert e["cost_usd"] == pytest.approx(want["cost_usd"], abs=1e-6)
        assert (e["calls"], e["errors"], e["rate_limited"]) == (
            want["calls"],
            want["errors"],
            want["rate_limited"],
        )
        assert e["cost_share_pct"] == pytest.approx(100 * want["cost_usd"] / total_cost, abs=0.05)
        assert e["calls_share_pct"] == pytest.approx(100 * want["calls"] / total_calls, abs=0.05)
    json.dumps(st)  # served as it is


def test_status_text_has_a_by_endpoint_block(ran: Ran) -> None:
    st = status_json(ran.journal, ran.run_id)
    lines = render_endpoints(st["endpoints"])
    assert lines[0].startswith("by endpoint")
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    expected = _from_rows(ran.journal, ran.run_id)
    assert set(rows) == set(expected)
    for name, cells in rows.items():
        assert int(cells[1].replace(",", "")) == expected[name]["calls"]
        assert cells[3] == f"${expected[name]['cost_usd']:,.4f}"
        assert (int(cells[5]), int(cells[6])) == (expected[name]["errors"], expected[name]["rate_limited"])


def _status_text(st: Any) -> str:
    console = Console(width=120, record=True, color_system=None)
    console.print(render_status(st, 120))
    return console.export_text()


def test_the_status_command_prints_the_block(ran: Ran) -> None:
    """An ended run: the "by endpoint" block; a live one: the rows of its dashboard frame."""
    ran.journal.set_run_state(ran.run_id, "finished", ended=True)  # as the session ends it
    st = status_json(ran.journal, ran.run_id)
    assert not st["live"]
    text = _status_text(st)
    assert "by endpoint" in text
    for name, want in _from_rows(ran.journal, ran.run_id).items():
        [line] = [line for line in text.splitlines() if line.split()[:1] == [name]]
        assert line.split()[1] == f"{want['calls']:,}" and line.split()[3] == f"${want['cost_usd']:,.4f}"
    frame = _status_text({**st, "live": True})
    assert "by endpoint" not in frame
    for name, want in _from_rows(ran.journal, ran.run_id).items():
        [line] = [line for line in frame.splitlines() if f" {name} " in line]
        assert f"{want['calls']:,} calls" in line and f"${want['cost_usd']:,.4f}" in line


def _samples(text: str, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            endpoint = labels.split('endpoint="', 1)[1].split('"', 1)[0]
            out[endpoint] = float(value)
    return out


def test_metrics_carry_an_endpoint_label(ran: Ran) -> None:
    text = render(status_json(ran.journal, ran.run_id)).decode()
    expected = _from_rows(ran.journal, ran.run_id)
    cost = _samples(text, "anvil_endpoint_cost_usd_total")
    assert cost == {k: pytest.approx(v["cost_usd"], abs=1e-6) for k, v in expected.items()}
    assert _samples(text, "anvil_endpoint_api_calls_total") == {k: v["calls"] for k, v in expected.items()}
    assert _samples(text, "anvil_endpoint_api_call_errors_total") == {
        k: v["errors"] for k, v in expected.items()
    }
    assert _samples(text, "anvil_endpoint_rate_limited_total") == {
        k: v["rate_limited"] for k, v in expected.items()
    }
    assert set(_samples(text, "anvil_endpoint_breakers_open")) == set(expected)


def test_the_results_file_names_each_results_endpoint(ran: Ran) -> None:
    lines = [json.loads(line) for line in iter_result_lines(ran.journal, ran.run_id)]
    stored = {
        row[0]: json.loads(row[1])[-1]["endpoint"]
        for row in ran.journal.db.execute(
            "SELECT id, attempts_json FROM jobs WHERE run_id = ?", (ran.run_id,)
        )
    }
    assert {line["id"]: line["endpoint"] for line in lines} == stored
    assert list(lines[0])[:4] == ["id", "status", "model", "endpoint"]
    assert {line["endpoint"] for line in lines} == {"org-a", "org-b", "bedrock-east"}


def test_the_report_embeds_the_endpoints(ran: Ran) -> None:
    data = report_data(ran.journal, ran.run_id, now=T0)
    endpoints = data["status"]["endpoints"]
    expected = _from_rows(ran.journal, ran.run_id)
    assert {k: v["calls"] for k, v in endpoints.items()} == {k: v["calls"] for k, v in expected.items()}
    page = render_html(data)
    assert 'id="endpoints-table"' in page and "renderEndpoints" in page


def test_a_run_without_named_endpoints_shows_none(plain: Ran) -> None:
    st = status_json(plain.journal, plain.run_id)
    assert "endpoints" not in st
    assert plain.journal.spend_by_endpoint(plain.run_id) == {}
    assert plain.journal.db.execute("SELECT COUNT(*) FROM endpoint_spend").fetchone() == (0,)
    assert "anvil_endpoint_" not in render(st).decode()
    assert all("endpoint" not in json.loads(line) for line in iter_result_lines(plain.journal, plain.run_id))
    assert render_endpoints(st.get("endpoints")) == []
    assert "endpoints" not in report_data(plain.journal, plain.run_id, now=T0)["status"]


def _pool(level: float) -> PoolView:
    dim = DimensionView(
        capacity=50.0, level=level, rate_per_min=600.0, configured_per_min=600.0, reserved_in_flight=0.0
    )
    return PoolView(paused_until_s=None, dimensions={"requests": dim})


def test_each_endpoint_gets_its_pools_and_breakers(ran: Ran) -> None:
    """The governor's pools and breakers on named endpoints (keys made by `endpoint_key`, as the
    governor makes them) are split by endpoint; the journal's spend beside them."""
    view = GovernorView(
        pools={
            endpoint_key("org-a", "default:sonnet"): _pool(40.0),
            endpoint_key("org-b", "default:sonnet"): _pool(10.0),
        },
        breakers={
            endpoint_key("org-b", "claude-sonnet-4-6"): BreakerView("open", 5, 12.0, 0),
            endpoint_key("org-a", "claude-sonnet-4-6"): BreakerView("closed", 0, None, 0),
        },
        in_flight=0,
    )
    state = EngineState(
        run_id=ran.run_id, mode="messages", phase="running", paused=False, in_flight=0,
        agent_limit=1, agent_min=1, agent_max=4, queue_depth=0, governor=view,
    )  # fmt: skip
    snap = build_snapshot(
        state, RunMetrics(total=1, started_at=0.0), batch_path="b", started_wall=T0, now=1.0
    )
    endpoints = endpoints_of(ran.journal.spend_by_endpoint(ran.run_id), snap["limits"], snap["breakers"])
    assert list(endpoints["org-a"]["pools"]) == ["default:sonnet"]
    assert endpoints["org-a"]["pools"]["default:sonnet"] == snap["limits"]["org-a/default:sonnet"]
    assert endpoints["org-b"]["breakers"]["claude-sonnet-4-6"]["state"] == "open"
    assert (endpoints["org-a"]["open_breakers"], endpoints["org-b"]["open_breakers"]) == (0, 1)
    assert endpoints["bedrock-east"]["pools"] == {} and endpoints["bedrock-east"]["calls"] == 6
    # the implicit endpoint's keys ("default:sonnet") belong to no named endpoint
    plain = GovernorView(pools={"default:sonnet": _pool(40.0)}, in_flight=0)
    snap2 = build_snapshot(
        replace(state, governor=plain),
        RunMetrics(total=1, started_at=0.0),
        batch_path="b",
        started_wall=T0,
        now=1.0,
    )
    assert endpoints_of({}, snap2["limits"], snap2["breakers"]) == {}
    assert "endpoints" not in snap2


def test_a_results_failed_calls_count_once_on_their_endpoints(tmp_path: Path) -> None:
    """Failed calls are journaled with the result, once: a result recorded again (a job already
    finished is left alone) adds nothing."""
    batch = write_jobs(tmp_path / "b.jsonl", [{"id": "a", "prompt": "q"}])
    with Journal.open(tmp_path / ".anvil") as journal:
        run_id = journal.create_run(str(batch), "sha", load_batch(batch))
        row = ReadyRow(0, 0, json.dumps({"model": "claude-sonnet-4-6"}), 0)
        events = by_endpoint(0, row._replace(seq=1))  # the failover script: 429 on org-b, then org-a
        [settled] = [e for e in events if isinstance(e, CallSettled)]
        [done] = [e for e in events if isinstance(e, JobDone)]
        result = replace(done.result, seq=0)
        journal.add_cost(run_id, 0, settled.cost_usd, settled.endpoint)
        journal.record_result(run_id, result, cost_journaled=True)
        journal.record_result(run_id, result, cost_journaled=True)
        assert journal.spend_by_endpoint(run_id) == {
            "org-a": {
                "cost_usd": pytest.approx(settled.cost_usd),
                "calls": 1,
                "errors": 0,
                "rate_limited": 0,
            },
            "org-b": {"cost_usd": 0.0, "calls": 0, "errors": 1, "rate_limited": 1},
        }


def test_the_commands_show_it(ran: Ran, tmp_path: Path) -> None:
    """`anvil status`, `anvil status --json` and `anvil export`, as a user runs them, over the
    journal the run wrote."""
    expected = _from_rows(ran.journal, ran.run_id)
    ran.journal.set_run_state(ran.run_id, "finished", ended=True)  # as the session ends it
    config = str(ran.config)
    shown = invoke_cli("status", ran.run_id, "--config", config, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "by endpoint" in shown.stdout
    for name, want in expected.items():
        [line] = [line for line in shown.stdout.splitlines() if line.split()[:1] == [name]]
        assert line.split()[1] == f"{want['calls']:,}" and line.split()[3] == f"${want['cost_usd']:,.4f}"
    as_json = invoke_cli("status", ran.run_id, "--json", "--config", config, cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    endpoints = json.loads(as_json.stdout)["endpoints"]
    assert {k: (v["calls"], v["errors"], v["rate_limited"]) for k, v in endpoints.items()} == {
        k: (v["calls"], v["errors"], v["rate_limited"]) for k, v in expected.items()
    }
    assert {k: v["cost_usd"] for k, v in endpoints.items()} == {
        k: pytest.approx(v["cost_usd"], abs=1e-6) for k, v in expected.items()
    }
    out = tmp_path / "results.jsonl"
    exported = invoke_cli("export", ran.run_id, "-o", str(out), "--config", config, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert {r["id"]: r["endpoint"] for r in read_results(out)} == {
        json.loads(line)["id"]: json.loads(line)["endpoint"]
        for line in iter_result_lines(ran.journal, ran.run_id)
    }


def test_the_runs_own_snapshot_carries_the_endpoints(ran: Ran) -> None:
    """The snapshot the conductor stored at its last tick (what the live dashboard showed) has
    the journal's figures: loaded when the session began, then kept call by call."""
    (stored,) = ran.journal.db.execute(
        "SELECT snapshot_json FROM runs WHERE id = ?", (ran.run_id,)
    ).fetchone()
    snap = json.loads(stored)
    expected = _from_rows(ran.journal, ran.run_id)
    assert {k: (v["calls"], v["errors"], v["rate_limited"]) for k, v in snap["endpoints"].items()} == {
        k: (v["calls"], v["errors"], v["rate_limited"]) for k, v in expected.items()
    }
    assert {k: v["cost_usd"] for k, v in snap["endpoints"].items()} == {
        k: pytest.approx(v["cost_usd"], abs=1e-6) for k, v in expected.items()
    }
    text = Console(width=100, record=True, color_system=None)
    text.print(render_frame(snap, 100))
    frame = text.export_text()
    for name, want in expected.items():
        [line] = [line for line in frame.splitlines() if f" {name} " in line]
        assert f"{want['calls']:,} calls" in line and f"${want['cost_usd']:,.4f}" in line


def test_a_plain_runs_snapshot_is_as_it_was(plain: Ran) -> None:
    (stored,) = plain.journal.db.execute(
        "SELECT snapshot_json FROM runs WHERE id = ?", (plain.run_id,)
    ).fetchone()
    assert "endpoints" not in json.loads(stored)
