"""`anvil run --mode batches` checks answers as messages mode does: invalid answers re-asked in a
follow-up batch, judges graded in one, a stop between batches resumed from the journal."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.resources.messages.batches import Batches

from anvil_cli.engine.journal.store import Journal
from anvil_cli.engine.modes.batches.ids import run_tag
from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import read_results, run_inprocess, write_config, write_jobs

FAST_BATCHES = {"max_requests": 50, "poll_interval_s": 0.05, "max_attempts": 3}
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
}


def _sim(seed: int) -> SimServer:
    return SimServer(SimConfig(seed=seed, output_tokens=30, batch_seconds_per_request=0.001))


def _config(tmp_path: Path, base_url: str, **sections: Any) -> Path:
    return write_config(
        tmp_path / "anvil.yaml", base_url, batches=FAST_BATCHES, cache={"enabled": False}, **sections
    )


def _schema_jobs(n: int, invalid: set[int], times: int = 1) -> list[dict[str, Any]]:
    def prompt(i: int) -> str:
        return f"@sim{{invalid={times}}} city {i}" if i in invalid else f"city {i}"

    return [{"id": f"c{i}", "prompt": prompt(i), "output_schema": SCHEMA} for i in range(n)]


def _rows(state_dir: Path, run_id: str) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    with Journal.open(state_dir) as journal:
        batches = journal.batches(run_id)
        total = journal.counts(run_id)
        jobs = {r["id"]: r for r in journal.job_rows(run_id, list(range(sum(total.values()))))}
    return batches, jobs


def test_invalid_rows_go_into_a_follow_up_batch_and_end_valid(tmp_path: Path) -> None:
    invalid = {0, 5}  # 20% of the rows answer invalid JSON first
    with _sim(21).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _schema_jobs(10, invalid))
        out = tmp_path / "out.jsonl"
        report = run_inprocess(_config(tmp_path, sim.base_url), batch, out, mode="batches")
        assert report.exit_code == ExitCode.OK, report.summary
        stats = sim.stats()
    assert stats["requests"] == 0 and stats["paid_duplicates"] == 0
    batches, jobs = _rows(tmp_path / ".anvil", report.run_id)
    assert [sorted(b.seqs) for b in batches] == [list(range(10)), sorted(invalid)]  # exactly those
    results = {r["id"]: r for r in read_results(out)}
    assert all(r["status"] == "succeeded" for r in results.values())
    assert all(isinstance(r["output_json"], dict) for r in results.values())
    for i in range(10):
        row, line = jobs[f"c{i}"], results[f"c{i}"]
        purposes = [a.get("purpose") for a in row["attempt_log"]]
        assert all(a["batch"] for a in row["attempt_log"])
        assert line["checks"]["passed"] and line["checks"]["results"][0]["name"] == "schema"
        if i in invalid:
            assert purposes == [None, "reask"] and line["checks"]["reasks"] == 1
            assert 0 < line["checks"]["reask_cost_usd"] < row["cost_usd"]
        else:
            assert purposes == [None] and line["checks"]["reasks"] == 0
    with Journal.open(tmp_path / ".anvil") as journal:
        spent = journal.totals(report.run_id)["cost_usd"]
    assert spent == pytest.approx(sum(r["cost_usd"] for r in jobs.values()))
    assert report.summary["run_cost_usd"] == pytest.approx(spent)


def test_never_valid_fails_invalid_output_with_its_last_answer(tmp_path: Path) -> None:
    with _sim(22).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _schema_jobs(3, {1}, times=9))
        out = tmp_path / "out.jsonl"
        config = _config(tmp_path, sim.base_url, checks={"max_reasks": 2})
        report = run_inprocess(config, batch, out, mode="batches")
        assert sim.stats()["batches_created"] == 3  # the answer, then two re-asks
    assert report.exit_code != ExitCode.OK
    results = {r["id"]: r for r in read_results(out)}
    bad = results["c1"]
    assert bad["status"] == "failed" and bad["error"]["type"] == "invalid_output"
    assert bad["output"]  # the last answer kept
    assert bad["checks"]["reasks"] == 2 and not bad["checks"]["passed"]
    schema = bad["checks"]["results"][0]
    assert schema["name"] == "schema" and not schema["passed"] and schema["detail"] in bad["error"]["message"]
    assert results["c0"]["status"] == results["c2"]["status"] == "succeeded"
    _, jobs = _rows(tmp_path / ".anvil", report.run_id)
    assert [a.get("purpose") for a in jobs["c1"]["attempt_log"]] == [None, "reask", "reask"]


def test_judges_grade_in_a_follow_up_batch_at_the_batch_price(tmp_path: Path) -> None:
    checks = [{"contains": "city"}, {"judge": {"rubric": "Names a real city.", "scale": [1, 5]}}]
    jobs = [
        {"id": "good", "prompt": "@sim{score=5} name a city", "checks": checks},
        {"id": "poor", "prompt": "@sim{score=2} name a city", "checks": checks},
    ]
    with _sim(23).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", jobs)
        out = tmp_path / "out.jsonl"
        report = run_inprocess(_config(tmp_path, sim.base_url), batch, out, mode="batches")
        assert report.exit_code == ExitCode.OK, report.summary
        stats = sim.stats()
    assert stats["batches_created"] == 2 and stats["requests"] == 0
    batches, rows = _rows(tmp_path / ".anvil", report.run_id)
    assert [len(b.seqs) for b in batches] == [2, 2]
    results = {r["id"]: r for r in read_results(out)}
    for name, grade, passed in (("good", 5, True), ("poor", 2, False)):
        line, row = results[name], rows[name]
        assert line["status"] == "succeeded"
        contains, judge = line["checks"]["results"]
        assert contains["kind"] == "contains" and judge["kind"] == "judge"
        assert judge["value"] == grade and judge["passed"] is passed
        assert judge["model"] == "claude-haiku-4-5"
        judge_attempt = row["attempt_log"][-1]
        assert judge_attempt["purpose"] == "judge" and judge_attempt["batch"]
        assert judge_attempt["model"] == "claude-haiku-4-5"
        assert 0 < line["checks"]["judge_cost_usd"] < row["cost_usd"]


def test_a_stop_between_the_answer_and_its_re_ask_resumes_from_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first batch ends and is ingested, then the follow-up's create is refused (the run
    stops, resumable): the journal holds the invalid answers and what they cost; the resumed
    run sends only the re-ask, and pays only for it."""
    original = Batches.create
    calls: list[int] = []

    def refuse_the_second(self: Batches, **kwargs: Any) -> Any:
        calls.append(len(kwargs["requests"]))
        if len(calls) == 2:
            request = httpx2.Request("POST", "http://sim/v1/messages/batches")
            raise anthropic.PermissionDeniedError(
                "forbidden",
                response=httpx2.Response(403, request=request),
                body={"type": "error", "error": {"type": "permission_error", "message": "key revoked"}},
            )
        return original(self, **kwargs)

    jobs = _schema_jobs(5, {2})
    with _sim(24).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", jobs)
        config = _config(tmp_path, sim.base_url)
        out = tmp_path / "out.jsonl"
        with monkeypatch.context() as patch:
            patch.setattr(Batches, "create", refuse_the_second)
            stopped = run_inprocess(config, batch, out, mode="batches")
        assert stopped.exit_code == ExitCode.STOPPED, stopped.summary
        with Journal.open(tmp_path / ".anvil") as journal:
            waiting = journal.followups(stopped.run_id, [2])[2]
            spent_before = journal.totals(stopped.run_id)["cost_usd"]
            pending = journal.job_rows(stopped.run_id, [2])[0]
        assert pending["state"] == "pending" and waiting["stage"] == "reask" and waiting["reasks"] == 1
        assert [t["role"] for t in waiting["turns"]] == ["assistant", "user"]
        assert waiting["cost_usd"] > 0 and spent_before > 0
        resumed = run_inprocess(config, batch, out, mode="batches")
        assert resumed.exit_code == ExitCode.OK, resumed.summary
        stats = sim.stats()
        assert stats["batches_created"] == 2 and stats["batch_requests"] == 6  # 5 answers, 1 re-ask
        assert stats["paid_duplicates"] == 0

    assert calls == [5, 1]
    with Journal.open(tmp_path / ".anvil") as journal:
        total = journal.totals(resumed.run_id)["cost_usd"]
        assert journal.followups(resumed.run_id, list(range(5))) == {}
    results = read_results(out)
    reask_cost = next(r for r in results if r["id"] == "c2")["checks"]["reask_cost_usd"]
    assert reask_cost > 0 and total == pytest.approx(spent_before + reask_cost)  # only the re-ask paid
    assert {r["id"]: r["status"] for r in results} == {f"c{i}": "succeeded" for i in range(5)}
    assert {r["id"]: r["checks"]["reasks"] for r in results} == {f"c{i}": int(i == 2) for i in range(5)}


def test_a_follow_up_reads_back_from_its_journal_json_as_it_was() -> None:
    from anvil_cli.engine.attempts import Attempt
    from anvil_cli.engine.modes.batches.followup import FollowUp
    from anvil_cli.engine.outcomes import Usage
    from anvil_cli.policy.checks.judge import read_judgement
    from anvil_cli.policy.checks.schema import check_answer, reask_message
    from anvil_cli.policy.checks.spec import CheckSpec

    usage = Usage.from_json({"input_tokens": 10, "output_tokens": 5})
    error = check_answer(SCHEMA, "not json").error
    assert error is not None
    fu = FollowUp().called(usage, 0.25, Attempt(1, "m", 200, batch=True))
    fu = fu.reask("not json", reask_message(SCHEMA, error), error, since=1)
    fu = fu.called(usage, 0.5, Attempt(2, "m", 200, batch=True, purpose="reask"))
    spec = CheckSpec("j", "judge", {"rubric": "r", "scale": [1, 5]})
    judged = read_judgement(spec, "h", '{"score": 4, "reason": "fine"}')
    asking = replace(fu, stage="judge", answer='{"city": "x"}', results=(None, None))
    assert asking.pending_judges() == [0, 1]
    fu = asking.judged(0, judged)
    assert fu.pending_judges() == [1]
    back = FollowUp.from_json(json.loads(json.dumps(fu.to_json())))
    assert back == fu and back.results[0] == judged and back.results[1] is None
    assert back.reasks == 1 and back.reask_cost_usd == 0.5 and back.cost_usd == 0.75
    assert back.usage is not None and back.usage.output_tokens == 10
    assert [a.purpose for a in back.attempt_log] == [None, "reask"]


@pytest.mark.slow
def test_batches_mode_ends_with_the_valid_set_messages_mode_gives(tmp_path: Path) -> None:
    jobs = _schema_jobs(10, {1, 6})  # re-asked once, then valid
    jobs[8]["prompt"] = "@sim{invalid=always} city 8"  # never valid
    ends: dict[str, dict[str, tuple[str, int]]] = {}
    with _sim(25).start_thread() as sim:
        for mode in ("batches", "messages"):
            where = tmp_path / mode
            where.mkdir()
            batch = write_jobs(where / "b.jsonl", jobs)
            config = write_config(
                where / "anvil.yaml", sim.base_url, batches=FAST_BATCHES, cache={"enabled": False}
            )
            run_inprocess(config, batch, where / "out.jsonl", mode=mode)
            ends[mode] = {
                r["id"]: (r["status"], r["checks"]["reasks"]) for r in read_results(where / "out.jsonl")
            }
    assert ends["batches"] == ends["messages"]
    assert {i for i, (status, _) in ends["batches"].items() if status == "failed"} == {"c8"}
    assert {i for i, (_, reasks) in ends["batches"].items() if reasks} == {"c1", "c6", "c8"}


def test_a_jobs_judges_go_in_one_batch_and_one_that_fails_fails_only_its_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = [
        {"name": "real", "judge": {"rubric": "Names a real city.", "scale": [1, 10]}},
        {"name": "broken", "judge": {"rubric": "A rubric never answered.", "scale": [1, 10]}},
    ]
    original = Batches.create
    sent: list[dict[str, Any]] = []
    ids: list[list[str]] = []

    def broken_judge_refused(self: Batches, **kwargs: Any) -> Any:
        ids.append([r["custom_id"] for r in kwargs["requests"]])
        for request in kwargs["requests"]:
            params = request["params"]
            sent.append(params)
            if "never answered" in json.dumps(params["messages"]):  # the simulator errors it
                params["messages"] = [{"role": "user", "content": "@sim{no_such_directive=1}"}]
        return original(self, **kwargs)

    monkeypatch.setattr(Batches, "create", broken_judge_refused)
    with _sim(26).start_thread() as sim:
        batch = write_jobs(
            tmp_path / "b.jsonl", [{"id": "j", "prompt": "@sim{score=9} a city", "checks": checks}]
        )
        out = tmp_path / "out.jsonl"
        report = run_inprocess(_config(tmp_path, sim.base_url), batch, out, mode="batches")
        assert report.exit_code == ExitCode.OK, report.summary
    batches, rows = _rows(tmp_path / ".anvil", report.run_id)
    tag = run_tag(report.run_id)
    # the answer; both judges; the broken one twice more (3 submissions of the judges' stage)
    assert ids == [[f"{tag}-0"], [f"{tag}-0-0", f"{tag}-0-1"], [f"{tag}-0-1"], [f"{tag}-0-1"]]
    assert len(batches) == 4
    assert all(b.worst_usd > 0 for b in batches)  # each held against the budget
    judge = sent[1]
    assert judge["model"] == "claude-haiku-4-5" and judge["max_tokens"] == 512
    assert judge["output_config"]["format"]["type"] == "json_schema"
    assert "a city" in judge["messages"][0]["content"]
    line = read_results(out)[0]
    real, broken = line["checks"]["results"]
    assert real["name"] == "real" and real["passed"] and real["value"] == 9
    assert broken["name"] == "broken" and not broken["passed"] and "judge's call failed" in broken["detail"]
    assert line["status"] == "succeeded" and not line["checks"]["passed"]
    assert [a.get("purpose") for a in rows["j"]["attempt_log"]] == [None, "judge"]


def test_a_re_ask_never_accepted_by_the_api_fails_the_job_keeping_what_it_paid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Batches.create

    def refuse_re_asks(self: Batches, **kwargs: Any) -> Any:
        if any(len(r["params"]["messages"]) > 1 for r in kwargs["requests"]):
            request = httpx2.Request("POST", "http://sim/v1/messages/batches")
            raise anthropic.InternalServerError(
                "overloaded",
                response=httpx2.Response(500, request=request),
                body={"type": "error", "error": {"type": "api_error", "message": "try later"}},
            )
        return original(self, **kwargs)

    monkeypatch.setattr(Batches, "create", refuse_re_asks)
    with _sim(27).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", _schema_jobs(2, {1}))
        out = tmp_path / "out.jsonl"
        report = run_inprocess(_config(tmp_path, sim.base_url), batch, out, mode="batches")
        assert sim.stats()["batches_created"] == 1, report.summary
        assert report.exit_code == ExitCode.JOBS_FAILED, (report.summary, report.message)
    results = {r["id"]: r for r in read_results(out)}
    bad = results["c1"]
    assert results["c0"]["status"] == "succeeded" and bad["status"] == "failed"
    assert bad["error"]["type"] == "batch_error" and "gave up after" in bad["error"]["message"]
    assert bad["output"] and bad["cost_usd"] > 0  # the invalid answer, paid for, kept
    assert bad["checks"]["reasks"] == 1 and bad["checks"]["results"][0]["name"] == "schema"
    assert not bad["checks"]["results"][0]["passed"]
    with Journal.open(tmp_path / ".anvil") as journal:
        assert journal.totals(report.run_id)["cost_usd"] == pytest.approx(
            results["c0"]["cost_usd"] + bad["cost_usd"]
        )


@pytest.mark.slow
def test_a_follow_up_left_behind_by_messages_mode_is_not_resumed_after_retry_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches mode stops with a re-ask pending; messages mode then settles the job (it fails,
    never valid); `--retry-failed` in batches mode asks it afresh, not from the stale re-ask."""
    original = Batches.create
    first_messages: list[int] = []

    def refuse_the_second(self: Batches, **kwargs: Any) -> Any:
        first_messages.append(len(kwargs["requests"][0]["params"]["messages"]))
        if len(first_messages) == 2:
            request = httpx2.Request("POST", "http://sim/v1/messages/batches")
            raise anthropic.PermissionDeniedError(
                "forbidden",
                response=httpx2.Response(403, request=request),
                body={"type": "error", "error": {"type": "permission_error", "message": "key revoked"}},
            )
        return original(self, **kwargs)

    jobs = _schema_jobs(1, {0}, times=0)
    jobs[0]["prompt"] = "@sim{invalid=always} city 0"
    monkeypatch.setattr(Batches, "create", refuse_the_second)
    with _sim(28).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", jobs)
        config = _config(tmp_path, sim.base_url, checks={"max_reasks": 1})
        out = tmp_path / "out.jsonl"
        stopped = run_inprocess(config, batch, out, mode="batches")
        assert stopped.exit_code == ExitCode.STOPPED, stopped.summary
        settled = run_inprocess(config, batch, out, mode="messages")
        assert settled.exit_code == ExitCode.JOBS_FAILED, settled.summary
        again = run_inprocess(config, batch, out, mode="batches", retry_failed=True)
        assert again.exit_code == ExitCode.JOBS_FAILED, again.summary
    assert first_messages == [1, 3, 1, 3]  # afresh: the answer alone, then its one re-ask
    _, rows = _rows(tmp_path / ".anvil", again.run_id)
    assert [a.get("purpose") for a in rows["c0"]["attempt_log"]] == [None, "reask"]
    assert rows["c0"]["error"]["type"] == "invalid_output"


def test_an_unconfirmed_judges_batch_is_found_on_the_server_not_resubmitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Batches.create

    def judges_then_lose_the_answer(self: Batches, **kwargs: Any) -> Any:
        batch = original(self, **kwargs)
        if any(r["custom_id"].count("-") == 2 for r in kwargs["requests"]):  # the judges' batch
            raise anthropic.APIConnectionError(
                request=httpx2.Request("POST", "http://sim/v1/messages/batches")
            )
        return batch

    monkeypatch.setattr(Batches, "create", judges_then_lose_the_answer)
    checks = [{"judge": {"rubric": "Names a city.", "scale": [1, 5]}}, {"judge": "Is short."}]
    jobs = [{"id": f"j{i}", "prompt": f"@sim{{score=4}} city {i}", "checks": checks} for i in range(3)]
    with _sim(29).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", jobs)
        out = tmp_path / "out.jsonl"
        report = run_inprocess(_config(tmp_path, sim.base_url), batch, out, mode="batches")
        assert report.exit_code == ExitCode.OK, report.summary
        stats = sim.stats()
    assert stats["batches_created"] == 2 and stats["batch_requests"] == 3 + 6
    results = read_results(out)
    assert all([c["value"] for c in r["checks"]["results"]] == [4, 4] for r in results)
