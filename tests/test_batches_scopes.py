"""Budgets by scope and window in `--mode batches`: each job is held against every cap it is under
(its scopes', the state dir's day and month) before its batch is created, through the governor's
book and the state dir's ledger; a job its caps cannot cover stays pending while the others' go
into batches, and the run stops for "budget_scope" (exit 3); a resume with the cap raised runs
the rest, paying nothing twice. The pure part (which jobs of a batch fit) with the in-memory
ledger and a fake clock; the whole runs on the simulator's Message Batches API."""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.config.budget import Budget
from anvil_cli.config.load import load_settings
from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.ledger.store import Ledger
from anvil_cli.engine.modes.batches.budget import BatchesBudget
from anvil_cli.engine.modes.batches.ids import run_tag
from anvil_cli.engine.modes.batches.requests import BatchItem, prepare
from anvil_cli.engine.modes.batches.scopes import Ask, BatchScopes, open_asks
from anvil_cli.exitcodes import ExitCode
from anvil_cli.jobs.loader import load_batch
from anvil_cli.policy.budgets import MemoryLedger, ScopeBook, caps_from
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.session.runner import RunReport
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.snapshot.status import status_json
from tests.engine_support import journal_query, run_inprocess, write_config, write_jobs

W = 0.01  # a job's worst case
NOON = float(calendar.timegm((2026, 12, 5, 12, 0, 0)))  # the book's `now` 0.0, as Unix time
RESEARCH = "metadata.team=research"
SUPPORT = "metadata.team=support"
BATCHES = {"max_requests": 8, "poll_interval_s": 0.05, "max_attempts": 3}


def _budget(scopes: dict[str, Any], *, max_usd: float | None = None, **windows: float) -> BatchesBudget:
    """The batches budget of settings `budget: {scopes: ..., per_day_usd: ...}`, at NOON."""
    settings = Budget.model_validate({"scopes": {"metadata.team": scopes}, **windows})
    book = ScopeBook(caps_from(settings), MemoryLedger(), NOON)
    return BatchesBudget(max_usd, None, 0.0, scopes=BatchScopes(book, settings.scopes, clock=lambda: 0.0))


def _asks(budget: BatchesBudget, teams: str, first: int = 0) -> list[Ask]:
    """One job a letter (r: research, s: support, o: neither), seqs from `first`."""
    names = {"r": "research", "s": "support", "o": "other"}
    return [Ask(first + n, budget.scopes.of({"team": names[t]}), W) for n, t in enumerate(teams)]


def test_a_scope_that_covers_some_jobs_lets_the_others_in() -> None:
    budget = _budget({"research": {"max_usd": 2.5 * W}})
    asks = _asks(budget, "rrrsos")
    assert asks[0].scopes == (RESEARCH,) and asks[3].scopes == () and asks[4].scopes == ()
    choice = budget.choose(asks)
    # two research jobs are held; the third waits for their results (they may cost less)
    assert choice.chosen == [0, 1, 3, 4, 5] and choice.scope_waiting and not choice.scope_denied
    assert not choice.stopped and not budget.denied and budget.events() == []

    budget.settle(2 * W, 2 * W, [0, 1], {0: W, 1: W})  # they cost their worst: no room for a third
    choice = budget.choose(_asks(budget, "rsr", first=6))
    assert choice.chosen == [1] and choice.scope_denied == [0, 2] and not choice.scope_waiting
    [(kind, data)] = budget.events()  # once per cap, however many jobs it denies
    assert kind == "budget_scope_exhausted" and data["scope"] == RESEARCH and data["window"] == "run"
    assert data["spent_usd"] == pytest.approx(2 * W) and data["cap_usd"] == pytest.approx(2.5 * W)
    assert data["message"].startswith(f"scope {RESEARCH}: spent $0.02 of its $0.0250 this run")
    assert not budget.denied  # the run's own budget is not spent: the other jobs go on


def test_results_that_cost_less_than_their_worst_case_make_room() -> None:
    budget = _budget({"research": {"max_usd": 2.5 * W}})
    assert budget.choose(_asks(budget, "rrr")).chosen == [0, 1]
    budget.settle(2 * W, 0.5 * W, [0, 1], {0: 0.25 * W, 1: 0.25 * W})
    assert budget.choose(_asks(budget, "rrr", first=2)).chosen == [0, 1]  # 0.5 spent + 2 held
    line = {(x.scope, x.window): x for x in budget.scopes.lines()}[(RESEARCH, "run")]
    assert line.spent_usd == pytest.approx(0.5 * W) and line.reserved_usd == pytest.approx(2 * W)


def test_a_batch_never_created_gives_its_jobs_holds_back() -> None:
    budget = _budget({"research": {"max_usd": 2 * W}})
    assert budget.choose(_asks(budget, "rr")).chosen == [0, 1]
    assert budget.choose(_asks(budget, "r", first=2)).scope_waiting
    budget.release(2 * W, [0, 1])  # refused, or not found on the server
    assert budget.choose(_asks(budget, "rr")).chosen == [0, 1]


def test_the_state_dirs_day_holds_every_job_and_max_usd_comes_first() -> None:
    budget = _budget({"research": 100.0}, per_day_usd=3 * W)
    choice = budget.choose(_asks(budget, "rsos"))
    assert choice.chosen == [0, 1, 2] and choice.scope_waiting  # the day covers three at once
    stopped = _budget({"research": 100.0}, max_usd=1.5 * W, per_day_usd=3 * W)
    choice = stopped.choose(_asks(stopped, "rsos"))
    assert choice.chosen == [0] and choice.stopped and not choice.scope_waiting  # max_usd: the rest wait
    lines = {(x.scope, x.window): x for x in stopped.scopes.lines()}
    assert lines[("all", "day")].reserved_usd == pytest.approx(W)  # the next was never held


def test_without_caps_nothing_is_held_and_fitting_is_unchanged() -> None:
    budget = BatchesBudget(max_usd=0.10, warn_usd=None, spent_before_usd=0.0)
    assert budget.scopes.of({"team": "research"}) == () and budget.scopes.lines() == ()
    assert budget.choose([Ask(0, (), 0.06), Ask(1, (), 0.04), Ask(2, (), 0.01)]).chosen == [0, 1]


def test_a_resumed_run_holds_its_open_batches_jobs_again(tmp_path: Path) -> None:
    jobs = [
        {"id": f"{team}-{i}", "prompt": "q", "max_tokens": 64 + 960 * i, "metadata": {"team": team}}
        for team in ("research", "support")
        for i in range(2)
    ]
    batch = write_jobs(tmp_path / "b.jsonl", jobs)
    config = write_config(
        tmp_path / "anvil.yaml", "http://127.0.0.1:9", budget={"scopes": {"metadata.team": {"research": 1.0}}}
    )
    settings = load_settings(config, env={})
    pricer = Pricer.from_settings(settings)
    loaded = list(load_batch(batch))
    with Journal.open(tmp_path / ".anvil") as journal:
        run_id = journal.create_run(str(batch), "sha", loaded, mode="batches")
        tag = run_tag(run_id)
        worst = {}
        for job in loaded:
            items = prepare(job, 0, settings, pricer, None, tag)
            assert isinstance(items, list)
            worst[job.seq] = sum(i.worst_usd for i in items)
        journal.add_batch_intent(run_id, [0, 1, 2], sum(worst[s] for s in (0, 1, 2)))
        book = ScopeBook(caps_from(settings.budget), MemoryLedger(), NOON)
        scopes = BatchScopes(book, settings.budget.scopes, clock=lambda: 0.0)
        asks = open_asks(journal, run_id, journal.batches(run_id), scopes, settings, pricer, tag)
    assert [(a.seq, a.scopes) for a in asks] == [(0, (RESEARCH,)), (1, (RESEARCH,)), (2, ())]
    assert [a.worst_usd for a in asks] == pytest.approx([worst[0], worst[1], worst[2]])
    assert worst[1] > 2 * worst[0]  # each job its own worst case, not an even share
    scopes.hold(asks)
    [line] = scopes.lines()
    assert line.reserved_usd == pytest.approx(worst[0] + worst[1])


# -- whole runs on the simulator -----------------------------------------------------------------


def _team_rows(state: Path) -> list[tuple[str, str, float]]:
    rows = journal_query(state, "SELECT job_json, state, cost_usd FROM jobs")
    return [(json.loads(str(j))["metadata"]["team"], str(s), float(str(c or 0))) for j, s, c in rows]


def _run(tmp: Path, sim: SimServer, batch: Path, cap_usd: float) -> RunReport:
    scopes = {"metadata.team": {"research": {"max_usd": cap_usd}}}
    config = write_config(
        tmp / "anvil.yaml",
        sim.base_url,
        budget={"scopes": scopes, "per_month_usd": 50},
        batches=BATCHES,
        cache={"enabled": False},
    )
    return run_inprocess(config, batch, mode="batches")


@pytest.fixture(name="runs", scope="module")
def fixture_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run whose research scope covers only some of its jobs, then the same command again with
    the cap raised; what was seen after each."""
    tmp = tmp_path_factory.mktemp("batch-scopes")
    state = tmp / ".anvil"
    jobs = [
        {"id": f"{team}-{i}", "prompt": f"{team} {i}", "metadata": {"team": team}}
        for team in ("research", "support")
        for i in range(10)
    ]
    batch = write_jobs(tmp / "b.jsonl", jobs)
    probe = write_config(tmp / "probe.yaml", "http://127.0.0.1:9")
    settings = load_settings(probe, env={})
    item = prepare(next(load_batch(batch)), 0, settings, Pricer.from_settings(settings), None, "t")
    assert isinstance(item, list) and isinstance(item[0], BatchItem)
    cap = 3 * item[0].worst_usd  # a research job's worst case, as the run prices it
    out: dict[str, Any] = {"cap": cap}
    with SimServer(
        SimConfig(seed=9, output_tokens=30, batch_seconds_per_request=0.001)
    ).start_thread() as sim:
        out["first"] = _run(tmp, sim, batch, cap)
        out["first_rows"] = _team_rows(state)
        out["first_sim"] = sim.stats()
        with Journal.open(state) as journal:
            out["events"] = journal.events(out["first"].run_id, "budget_scope_exhausted")
            out["status"] = dict(status_json(journal))
        ledger = Ledger.open(state)
        out["ledger"] = {(r.key.scope, r.key.window): r for r in ledger.rows(time.time())}
        ledger.db.close()
        out["second"] = _run(tmp, sim, batch, 10 * cap)
        out["second_rows"] = _team_rows(state)
        out["second_sim"] = sim.stats()
        out["runs"] = journal_query(state, "SELECT COUNT(DISTINCT run_id) FROM jobs")
    return out


def test_a_spent_scope_stops_its_jobs_alone(runs: dict[str, Any]) -> None:
    report, rows, cap = runs["first"], runs["first_rows"], runs["cap"]
    assert report.exit_code == ExitCode.STOPPED and report.summary["stop_reason"] == "budget_scope"
    assert report.message is not None and report.message.startswith(f"scope {RESEARCH}: spent $")
    research = [r for r in rows if r[0] == "research"]
    done = sum(s == "succeeded" for _, s, _ in research)
    assert 0 < done < 10 and all(s in ("succeeded", "pending") for _, s, _ in research)
    assert sum(c for *_, c in research) <= cap  # what the journal says it spent
    assert all(s == "succeeded" for t, s, _ in rows if t == "support")  # every support job done
    [event] = runs["events"]  # once for the one cap
    assert event["scope"] == RESEARCH and event["window"] == "run" and event["spent_usd"] <= cap
    assert runs["first_sim"]["batch_requests"] == 10 + done  # the stopped jobs were never sent


def test_the_views_and_the_ledger_say_it(runs: dict[str, Any]) -> None:
    st, cap, rows = runs["status"], runs["cap"], runs["first_rows"]
    assert st["stop_reason"] == "budget_scope" and st["budget_scopes"][0].startswith(f"scope {RESEARCH}")
    lines = {(s["scope"], s["window"]): s for s in st["governor"]["scopes"]}
    assert lines[(RESEARCH, "run")]["exhausted"] and lines[(RESEARCH, "run")]["cap_usd"] == cap
    assert lines[("all", "month")]["cap_usd"] == 50
    month = runs["ledger"][("all", "month")]  # the state dir's month, in the ledger
    assert month.spent_usd == pytest.approx(sum(c for *_, c in rows)) and month.leased_usd == 0.0


def test_the_same_command_with_the_cap_raised_runs_the_rest_paying_nothing_twice(
    runs: dict[str, Any],
) -> None:
    report, rows = runs["second"], runs["second_rows"]
    assert report.exit_code == ExitCode.OK, report.summary
    assert runs["runs"] == [(1,)]  # one run, resumed
    assert all(s == "succeeded" for _, s, _ in rows) and len(rows) == 20
    assert runs["second_sim"]["batch_requests"] == 20  # each job sent once, across both sessions
    assert runs["second_sim"]["paid_duplicates"] == 0
