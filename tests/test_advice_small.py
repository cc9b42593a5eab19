"""The smaller promises, as a user meets them: `export -o -` writes to stdout; an ambiguous run
prefix names its candidates; `report -o`/`export -o` into a missing directory exit 2 and create
nothing; `--serve` on a public address without a token exits 2 before anything is written; a
plan's sample is never "the latest run" (old journals included); a YAML string never closed is
reported where it opened; `--mode batches --simulate` polls the simulator every second unless
told otherwise; an alert whose value is back is not left active when the run ends."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest

from anvil_cli.config.load import load_settings
from anvil_cli.engine.journal.rows import SCHEMA
from anvil_cli.engine.journal.store import Journal
from anvil_cli.exitcodes import ExitCode
from anvil_cli.session.simulated import SIM_POLL_INTERVAL_S, simulated_poll
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import (
    invoke_cli,
    journal_query,
    run_cli,
    run_inprocess,
    write_config,
    write_jsonl_batch,
)


@pytest.fixture(name="two_runs", scope="module")
def fixture_two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """Two finished runs of a 3-job batch in DIR/.anvil (ids share their date prefix): (DIR, ids).
    Made once for the module: its tests only read them, and check they wrote nothing."""
    where = tmp_path_factory.mktemp("two-runs")
    with SimServer(SimConfig(seed=1, latency_ms=5)).start_thread() as sim:
        write_config(where / "anvil.yaml", sim.base_url)
        write_jsonl_batch(where / "b.jsonl", ["one", "two", "three"])
        ids = []
        for _ in range(2):
            done = run_cli("run", "b.jsonl", "--fresh", "-q", "--json", cwd=where)
            assert done.returncode == 0, done.stderr
            ids.append(json.loads(done.stdout)["run_id"])
    return where, ids[0], ids[1]


def test_export_to_stdout_and_ambiguous_prefixes(two_runs: tuple[Path, str, str]) -> None:
    where, first, latest = two_runs
    done = invoke_cli("export", "-o", "-", cwd=where)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["job-0000", "job-0001", "job-0002"]
    assert not (where / "-").exists() and f"run {latest}" in done.stderr

    prefix = first[:4]  # the year: both runs
    for command in (["export", prefix, "-o", "x.jsonl"], ["status", prefix], ["report", prefix]):
        refused = invoke_cli(*command, cwd=where)
        assert refused.returncode == ExitCode.BAD_INPUT, refused.stderr
        assert "ambiguous" in refused.stderr and first in refused.stderr and latest in refused.stderr
    assert not (where / "x.jsonl").exists()
    unknown = invoke_cli("export", "zz", "-o", "x.jsonl", cwd=where)
    assert unknown.returncode == ExitCode.BAD_INPUT and "no run matches 'zz'" in unknown.stderr


def test_report_and_export_into_a_missing_directory_write_nothing(two_runs: tuple[Path, str, str]) -> None:
    where = two_runs[0]
    for command in ("report", "export"):
        target = where / "missing" / "dir" / "out.file"
        done = invoke_cli(command, "-o", str(target), cwd=where)
        assert done.returncode == ExitCode.BAD_INPUT, done.stderr
        assert "does not exist" in done.stderr
        assert not (where / "missing").exists()


def test_serving_on_a_public_address_without_a_token_writes_nothing(tmp_path: Path) -> None:
    write_jsonl_batch(tmp_path / "b.jsonl", ["one"])
    done = run_cli("run", "b.jsonl", "--simulate", "--serve", "0.0.0.0:0", cwd=tmp_path)
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr
    assert "ANVIL_API_TOKEN" in done.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "b.jsonl"]  # no state dir, journal or token


def test_serving_on_a_port_in_use_writes_nothing(tmp_path: Path) -> None:
    write_jsonl_batch(tmp_path / "b.jsonl", ["one"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("run", "b.jsonl", "--simulate", "--serve", str(port), cwd=tmp_path)
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "b.jsonl"]  # no token file, no journal


@pytest.mark.slow
def test_a_plan_sample_is_never_the_latest_run(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=2, latency_ms=5, output_tokens=30)).start_thread() as sim:
        write_config(tmp_path / "anvil.yaml", sim.base_url)
        write_jsonl_batch(tmp_path / "b.jsonl", [f"question {i}" for i in range(8)])
        ran = run_cli("run", "b.jsonl", "-q", "--json", cwd=tmp_path)
        run_id = json.loads(ran.stdout)["run_id"]
        write_jsonl_batch(tmp_path / "other.jsonl", [f"other {i}" for i in range(8)])
        planned = run_cli("plan", "other.jsonl", "--sample", "4", "--json", cwd=tmp_path)
        assert planned.returncode == 0, planned.stderr
        sample_id = json.loads(planned.stdout)["sample"]["run_id"]
    assert sample_id != run_id
    status = json.loads(invoke_cli("status", "--json", cwd=tmp_path).stdout)
    assert status["run_id"] == run_id
    exported = invoke_cli("export", "-o", "-", cwd=tmp_path)
    assert f"run {run_id}" in exported.stderr and len(exported.stdout.splitlines()) == 8
    reported = invoke_cli("report", "-o", "r.html", cwd=tmp_path)
    assert f"run {run_id}" in reported.stderr
    # still there by its id, for whoever asks for it
    assert json.loads(invoke_cli("status", sample_id, "--json", cwd=tmp_path).stdout)["run_id"] == sample_id


def test_an_older_journal_gets_run_kinds_and_its_samples_are_not_the_latest(tmp_path: Path) -> None:
    state = tmp_path / ".anvil"
    state.mkdir(mode=0o700)
    with sqlite3.connect(state / "journal.sqlite") as db:  # as written before runs had a kind
        db.executescript(SCHEMA)
        rows = [
            ("20260101-000000-aaaaaa", str(tmp_path / "b.jsonl"), 1.0),
            ("20260101-000001-bbbbbb", str(state / "plan-samples" / "b-123.jsonl"), 2.0),
        ]
        db.executemany(
            "INSERT INTO runs (id, batch_path, batch_sha, created_at, updated_at, state)"
            " VALUES (?, ?, 'x', ?, ?, 'finished')",
            [(i, p, t, t) for i, p, t in rows],
        )
    journal = Journal.open_existing(state)
    assert journal is not None
    with journal:
        latest = journal.latest_run()
        assert latest is not None and latest.id == "20260101-000000-aaaaaa"
    kinds = {str(i): str(k) for i, k in journal_query(state, "SELECT id, kind FROM runs")}
    assert kinds == {"20260101-000000-aaaaaa": "run", "20260101-000001-bbbbbb": "sample"}


def test_an_unclosed_quote_is_reported_where_it_opened(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(
        "jobs:\n"
        "  - id: a\n"
        '    prompt: "hello\n'
        "    model: claude-haiku-4-5\n"
        "  - id: b\n"
        "    prompt: fine\n"
        "    model: claude-haiku-4-5\n"
    )
    for command in ("validate", "run"):
        done = run_cli(command, "b.yaml", *(["--simulate"] if command == "run" else []), cwd=tmp_path)
        assert done.returncode == ExitCode.BAD_INPUT, done.stderr
        assert "b.yaml:3:13:" in done.stderr and "never closed" in done.stderr, done.stderr
    assert not (tmp_path / ".anvil").exists()


def test_a_quote_closed_by_the_next_jobs_quote_is_reported_where_it_opened(tmp_path: Path) -> None:
    """The open string swallows lines up to the next quote; the parser fails just after it."""
    (tmp_path / "b.yaml").write_text(
        'jobs:\n  - id: a\n    prompt: "hello\n    model: claude-haiku-4-5\n  - id: "b"\n    prompt: x\n'
    )
    done = invoke_cli("validate", "b.yaml", cwd=tmp_path)
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr
    assert "b.yaml:3:13:" in done.stderr and "closing quote missing" in done.stderr, done.stderr


def test_batches_against_the_simulator_poll_every_second_unless_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = load_settings(None, env={})
    assert simulated_poll(plain, True).batches.poll_interval_s == SIM_POLL_INTERVAL_S
    assert simulated_poll(plain, False).batches.poll_interval_s == 30.0  # the real API: as configured
    from_env = load_settings(None, env={"ANVIL_BATCHES__POLL_INTERVAL_S": "7"})
    assert simulated_poll(from_env, True).batches.poll_interval_s == 7.0
    (tmp_path / "anvil.yaml").write_text("batches:\n  poll_interval_s: 5\n")
    assert simulated_poll(load_settings(tmp_path / "anvil.yaml", env={}), True).batches.poll_interval_s == 5.0


def test_an_alert_whose_value_is_back_is_not_active_when_the_run_ends(tmp_path: Path) -> None:
    """Two agents, busy from the first second (agent_utilisation raised), idle at the end: 48
    calls of 150 ms on two agents keep them busy over several one-second ticks, however slowly
    the machine starts the run."""
    with SimServer(SimConfig(seed=6, latency_ms=150)).start_thread() as sim:
        batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(48)])
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            scaling={"workers": 1, "max_agents": 2, "max_concurrent_jobs": 2, "min_agents": 2},
        )
        report = run_inprocess(config, batch)
    assert report.exit_code == ExitCode.OK
    with Journal.open(tmp_path / ".anvil") as journal:
        changes = [(e["change"], e["name"]) for e in journal.events(report.run_id, "alert")]
        row = journal.get_run(report.run_id)
    assert row is not None and row.snapshot is not None
    assert ("raised", "agent_utilisation") in changes
    assert changes[-1] == ("cleared", "agent_utilisation")
    assert row.snapshot["state"] == "finished" and row.snapshot["alerts"] == []
