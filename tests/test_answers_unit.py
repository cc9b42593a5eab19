"""A worker's agent checks each answer (anvil_cli/engine/worker/answers.py): re-asks an answer that
does not match the job's output schema, runs its deterministic checks and its judges; every
re-ask and judge a real call through the governor, retried, paid and logged with its purpose.

One agent, the real SDK over real HTTP to a simulator on 127.0.0.1, the real governor behind the
worker's broker. The request a job with an output schema sends (anvil_cli/engine/requests.py)
is checked here too."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import Settings
from anvil_cli.engine.attempts import Attempt
from anvil_cli.engine.outcomes import JobResult
from anvil_cli.engine.requests import prepare_request
from anvil_cli.engine.result_cache import CachedResult, ResultCache
from anvil_cli.engine.worker.agent import Abandoned, Agent, AgentContext
from anvil_cli.engine.worker.broker import GovernorBroker
from anvil_cli.engine.worker.clients import make_clients
from anvil_cli.jobs.job import Job
from anvil_cli.policy.checks.judge import JUDGE_MAX_TOKENS
from anvil_cli.policy.checks.schema import schema_instruction
from anvil_cli.policy.pricing.pricer import Pricer
from anvil_cli.sim import SimServer
from tests.governor_support import JumpingGovernor
from tests.sim_fixtures import SimFactory, fixture_sim_factory  # noqa: F401

HAIKU = "claude-haiku-4-5"
SONNET = "claude-sonnet-4-6"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer", "minimum": 0}},
    "required": ["city", "population"],
}


@dataclass
class Ran:
    result: JobResult
    attempts: list[Attempt]  # as the conductor hears of them (on_attempt)
    spent: list[tuple[int, float, str]]  # (seq, USD, endpoint) as settled (on_spend -> CallSettled)
    governor: JumpingGovernor


def settings_in(tmp_path: Path, **extra: Any) -> Settings:
    path = tmp_path / "anvil.yaml"
    file = {
        "state_dir": str(tmp_path / ".anvil"),
        "retries": {"max_attempts": 2, "backoff_base_s": 0.001, "backoff_max_s": 0.001},
        "cache": {"enabled": False},
        **extra,
    }
    path.write_text(json.dumps(file))
    return load_settings(path, env={})


def judge(name: str = "good", model: str | None = None, pass_at: float = 4) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "judge",
        "rubric": "Is it right?",
        "model": model,
        "scale": [1, 5],
        "pass_at": pass_at,
    }


def a_job(
    text: str, *, schema: dict[str, Any] | None = SCHEMA, checks: tuple[dict[str, Any], ...] = (), **more: Any
) -> Job:
    return Job(
        id="j",
        seq=3,
        messages=[{"role": "user", "content": text}],
        model=HAIKU,
        max_tokens=256,
        output_schema=schema,
        checks=checks,
        **more,
    )


def run_job(
    job: Job,
    sim: SimServer,
    settings: Settings,
    stop_when: Callable[[Attempt], bool] = lambda _a: False,
    spent: list[float] | None = None,
) -> Ran:
    """`job` run by one agent of a worker whose only endpoint is `sim`; the run begins to stop
    once an attempt `stop_when` picks is logged; `spent` gets what is paid as it is."""
    governor = JumpingGovernor()

    async def main() -> Ran:
        broker = GovernorBroker(governor, 0, asyncio.get_running_loop()).start()  # type: ignore[arg-type]
        pricer = Pricer.from_settings(settings)
        endpoint = Endpoint(sim.base_url, "test", api_key="sk-test")
        clients = make_clients([endpoint], 10.0, 4, pricer)
        attempts: list[Attempt] = []
        paid: list[tuple[int, float, str]] = []
        stopping = asyncio.Event()

        def on_attempt(attempt: Attempt) -> None:
            attempts.append(attempt)
            if stop_when(attempt):
                stopping.set()

        def on_spend(seq: int, usd: float, name: str) -> None:
            paid.append((seq, usd, name))
            if spent is not None:
                spent.append(usd)

        agent = Agent(
            AgentContext(
                clients=clients,
                governor=broker,
                settings=settings,
                pricer=pricer,
                stopping=stopping,
                on_attempt=lambda _seq, attempt: on_attempt(attempt),
                on_spend=on_spend,
            )
        )
        try:
            return Ran(await agent.run(job), attempts, paid, governor)
        finally:
            broker.close()
            for each in clients.values():
                await each.client.close()

    return asyncio.run(asyncio.wait_for(main(), timeout=60))  # a hang guard only


def purposes(result: JobResult) -> list[tuple[str | None, int | None]]:
    return [(a.purpose, a.status_code) for a in result.attempt_log or ()]


def paid(ran: Ran) -> float:
    return sum(usd for _, usd, _ in ran.spent)


# -- the request ------------------------------------------------------------------------------


def test_a_schema_is_asked_natively_and_changes_the_cache_key(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    effort = {"output_config": {"effort": "low"}}
    plain = prepare_request(a_job("hi", schema=None, params=effort), settings)
    asked = prepare_request(a_job("hi", params=effort), settings)
    other = prepare_request(a_job("hi", schema={**SCHEMA, "required": ["city"]}, params=effort), settings)
    assert plain.params["output_config"] == {"effort": "low"}
    fmt = asked.params["output_config"]
    assert fmt["effort"] == "low" and fmt["format"]["type"] == "json_schema"
    # the SDK's narrowing: `minimum` moved into a description, no extra properties
    assert fmt["format"]["schema"]["additionalProperties"] is False
    assert "minimum" not in fmt["format"]["schema"]["properties"]["population"]
    assert "system" not in asked.params
    assert len({plain.key, asked.key, other.key}) == 3


def test_without_native_format_the_schema_is_asked_in_the_system_prompt(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, checks={"native_format": False})
    bare = prepare_request(a_job("hi"), settings)
    assert bare.params["system"] == schema_instruction(SCHEMA) and "output_config" not in bare.params
    said = prepare_request(a_job("hi", system="Be brief."), settings)
    assert said.params["system"] == "Be brief.\n\n" + schema_instruction(SCHEMA)
    blocks = prepare_request(a_job("hi", system=[{"type": "text", "text": "Be brief."}]), settings)
    assert blocks.params["system"][-1] == {"type": "text", "text": schema_instruction(SCHEMA)}
    native = prepare_request(a_job("hi"), settings_in(tmp_path))
    assert bare.key != native.key != prepare_request(a_job("hi", schema=None), settings).key


def test_a_schema_the_sdk_cannot_narrow_is_asked_in_the_system_prompt(tmp_path: Path) -> None:
    loose = {"properties": {"a": {"type": "string"}}}  # no `type`: the SDK refuses it
    request = prepare_request(a_job("hi", schema=loose), settings_in(tmp_path))
    assert "output_config" not in request.params and request.params["system"] == schema_instruction(loose)


# -- the flow -----------------------------------------------------------------------------------


def test_an_answer_re_asked_once_then_valid(sim_factory: SimFactory, tmp_path: Path) -> None:
    ran = run_job(a_job("@sim{invalid=1} Where?"), sim_factory(), settings_in(tmp_path))
    r = ran.result
    assert r.succeeded and r.error is None
    assert purposes(r) == [(None, 200), ("reask", 200)]
    assert r.attempts == 2 and [a.n for a in r.attempt_log or ()] == [1, 2]
    value = json.loads(r.output or "")
    assert set(value) >= {"city", "population"}
    checks = r.checks
    assert checks is not None and checks.passed and checks.reasks == 1
    assert [(c.name, c.passed) for c in checks.results] == [("schema", True)]
    # every call paid and journaled; the re-ask's cost apart, and in the job's
    assert len(ran.spent) == 2 and r.cost_usd == pytest.approx(paid(ran))
    assert 0 < checks.reask_cost_usd < r.cost_usd and checks.reask_cost_usd == pytest.approx(ran.spent[1][1])
    assert checks.judge_cost_usd == 0
    assert r.cache_key is None  # the cache is off here


def test_an_answer_that_never_matches_fails_the_job(sim_factory: SimFactory, tmp_path: Path) -> None:
    ran = run_job(a_job("@sim{invalid=always} Where?"), sim_factory(), settings_in(tmp_path))
    r = ran.result
    assert not r.succeeded and r.error is not None and r.error.type == "invalid_output"
    checks = r.checks
    assert checks is not None and not checks.passed and checks.reasks == 2  # checks.max_reasks
    (schema,) = checks.results
    assert schema.name == "schema" and not schema.passed and r.error.message == schema.detail
    assert purposes(r) == [(None, 200), ("reask", 200), ("reask", 200)]
    assert r.output  # kept, for the user to see
    assert r.cost_usd == pytest.approx(paid(ran)) and len(ran.spent) == 3


def test_no_re_asks_when_max_reasks_is_0(sim_factory: SimFactory, tmp_path: Path) -> None:
    settings = settings_in(tmp_path, checks={"max_reasks": 0})
    ran = run_job(a_job("@sim{invalid=1} Where?"), sim_factory(), settings)
    r = ran.result
    assert not r.succeeded and r.error is not None and r.error.type == "invalid_output"
    assert purposes(r) == [(None, 200)] and r.checks is not None and r.checks.reasks == 0


def test_the_schema_is_asked_in_the_system_prompt_without_native_format(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Without the native format the answer is validated all the same (here: re-asked)."""
    settings = settings_in(tmp_path, checks={"native_format": False})
    ran = run_job(a_job("@sim{invalid=1} Where?"), sim_factory(), settings)
    assert ran.result.succeeded and purposes(ran.result) == [(None, 200), ("reask", 200)]
    assert ran.result.checks is not None and ran.result.checks.reasks == 1


def test_the_error_re_asked_with_is_the_job_s_error(sim_factory: SimFactory, tmp_path: Path) -> None:
    job = a_job("@sim{invalid=always} Where?", schema={"type": "string"})
    ran = run_job(job, sim_factory(), settings_in(tmp_path))
    assert not ran.result.succeeded and ran.result.error is not None
    assert ran.result.error.message.startswith("at $")


@pytest.mark.parametrize(("score", "passed"), [(5, True), (4, True), (2, False)])
def test_a_judge_grades_the_answer(sim_factory: SimFactory, tmp_path: Path, score: int, passed: bool) -> None:
    job = a_job(f"@sim{{score={score}}} Where?", checks=(judge(),))
    ran = run_job(job, sim_factory(), settings_in(tmp_path))
    r = ran.result
    assert r.succeeded  # checks never fail a job
    checks = r.checks
    assert checks is not None
    assert [(c.name, c.kind, c.passed) for c in checks.results] == [
        ("schema", "schema", True),
        ("good", "judge", passed),
    ]
    graded = checks.results[1]
    assert graded.value == score and graded.score == pytest.approx((score - 1) / 4) and graded.model == HAIKU
    assert checks.passed is passed
    assert purposes(r) == [(None, 200), ("judge", 200)]
    assert r.cost_usd == pytest.approx(paid(ran)) and checks.judge_cost_usd == pytest.approx(ran.spent[1][1])


def test_a_judge_on_another_model_at_the_job_s_priority(sim_factory: SimFactory, tmp_path: Path) -> None:
    sim = sim_factory()
    job = a_job("@sim{score=5} Where?", schema=None, checks=(judge(model=SONNET),), priority=1)
    ran = run_job(job, sim, settings_in(tmp_path))
    r = ran.result
    assert r.succeeded and r.model == HAIKU
    judged = [a for a in r.attempt_log or () if a.purpose == "judge"]
    assert [a.model for a in judged] == [SONNET]
    assert r.checks is not None and r.checks.results[0].model == SONNET and r.checks.passed
    assert [(model, priority) for model, _, priority in ran.governor.asked] == [(HAIKU, 1), (SONNET, 1)]
    # the judge asks for its own max_tokens, not the job's
    assert ran.governor.asked[1][1].max_tokens == JUDGE_MAX_TOKENS != job.max_tokens
    assert set(sim.stats()["by_model"]) == {HAIKU, SONNET}
    # the judge's tokens are not the job's usage; its cost is in the job's
    assert r.cost_usd == pytest.approx(paid(ran)) and r.checks.judge_cost_usd > 0


def test_a_judge_whose_call_fails_fails_its_check_not_the_job(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    job = a_job(f"@sim{{status=500, for_model={SONNET}}} Where?", checks=(judge(model=SONNET), judge("also")))
    ran = run_job(job, sim_factory(), settings_in(tmp_path))
    r = ran.result
    assert r.succeeded and r.error is None
    checks = r.checks
    assert checks is not None and not checks.passed
    failed, other = checks.results[1:]
    assert not failed.passed and failed.model == SONNET and "judge's call failed" in (failed.detail or "")
    assert "500" in (failed.detail or "")
    assert other.model == HAIKU
    sonnet = [(a.purpose, a.status_code) for a in r.attempt_log or () if a.model == SONNET]
    assert sonnet == [("judge", 500), ("judge", 500)]  # retries.max_attempts, then given up
    assert [a.status_code for a in ran.attempts if a.model == SONNET] == [500, 500]
    assert r.attempts == len(r.attempt_log or ()) == 4
    assert [a.n for a in r.attempt_log or ()] and sorted(a.n for a in r.attempt_log or ()) == [1, 2, 3, 4]


def test_deterministic_checks_run_beside_judges_in_their_order(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    checks = (
        {"name": "has-city", "kind": "contains", "values": ["city"], "ignore_case": False},
        judge(),
        {"name": "shouty", "kind": "regex", "pattern": "^[A-Z ]+$", "ignore_case": False},
    )
    ran = run_job(a_job("@sim{score=5} Where?", checks=checks), sim_factory(), settings_in(tmp_path))
    record = ran.result.checks
    assert record is not None
    assert [(c.name, c.passed) for c in record.results] == [
        ("schema", True),
        ("has-city", True),
        ("good", True),
        ("shouty", False),
    ]
    assert ran.result.succeeded and not record.passed


ECHO_TOOL = {
    "name": "lookup",
    "description": "look a city up",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    "anvil_command": [sys.executable, "-c", "import sys; sys.stdin.read(); print('Paris, 2100000')"],
}


def test_a_tool_using_job_validates_its_final_answer(sim_factory: SimFactory, tmp_path: Path) -> None:
    job = a_job("@sim{invalid=1} Where?", params={"tools": [ECHO_TOOL]})
    ran = run_job(job, sim_factory(), settings_in(tmp_path))
    r = ran.result
    assert r.succeeded, r.error
    log = r.attempt_log or ()
    assert log[0].tools is not None and log[0].tools[0].tool == "lookup"  # the tool turn first
    # the tool's turn, the answer after it (invalid), its re-ask: the simulator calls the tool
    # again (the conversation's last turn is no tool result), then answers
    assert purposes(r) == [(None, 200), (None, 200), ("reask", 200), ("reask", 200)]
    assert log[2].tools is not None and log[2].tools[0].tool == "lookup"
    assert r.checks is not None and r.checks.reasks == 1
    assert r.checks is not None and r.checks.passed
    json.loads(r.output or "")


def test_a_job_without_checks_has_no_record(sim_factory: SimFactory, tmp_path: Path) -> None:
    ran = run_job(a_job("Where?", schema=None), sim_factory(), settings_in(tmp_path))
    assert ran.result.succeeded and ran.result.checks is None
    assert purposes(ran.result) == [(None, 200)]


def test_a_cached_answer_is_checked_again(sim_factory: SimFactory, tmp_path: Path) -> None:
    """The result cache keeps the answer; its checks are run again (judges are real calls)."""
    sim = sim_factory()
    settings = settings_in(tmp_path, cache={"enabled": True})
    job = a_job("@sim{score=5} Where?", checks=(judge(),))
    first = run_job(job, sim, settings).result
    assert first.succeeded and first.cache_key is not None
    cache = ResultCache(settings.state_dir)
    cache.put(
        first.cache_key,
        CachedResult(first.model, first.output, first.stop_reason, first.usage, first.cost_usd),
    )
    cache.close()
    again = run_job(job, sim, settings)
    r = again.result
    assert r.succeeded and r.output == first.output
    assert purposes(r) == [(None, 200), ("judge", 200)] and (r.attempt_log or ())[0].cache_hit
    assert r.checks is not None and r.checks.passed and r.checks.reasks == 0
    assert r.cost_usd == pytest.approx(paid(again)) == pytest.approx(r.checks.judge_cost_usd)


def test_a_cached_answer_that_does_not_match_is_asked_afresh(sim_factory: SimFactory, tmp_path: Path) -> None:
    settings = settings_in(tmp_path, cache={"enabled": True})
    job = a_job("Where?")
    key = prepare_request(job, settings).key
    cache = ResultCache(settings.state_dir)
    cache.put(key, CachedResult(HAIKU, "not json", "end_turn", None, 0.0))
    cache.close()
    r = run_job(job, sim_factory(), settings).result
    assert r.succeeded and purposes(r) == [(None, 200)] and not (r.attempt_log or ())[0].cache_hit


def test_a_stop_during_a_re_ask_abandons_the_job(sim_factory: SimFactory, tmp_path: Path) -> None:
    """The run begins to stop as a re-ask's call fails (it would be retried): the job is given up
    (it goes back to pending, to run again from its start), its paid calls stay reported."""
    job = a_job("@sim{invalid=always, fail=500x1} Where?")
    settings = settings_in(
        tmp_path, retries={"max_attempts": 3, "backoff_base_s": 0.001, "backoff_max_s": 0.001}
    )
    with pytest.raises(Abandoned) as caught:
        run_job(job, sim_factory(), settings, stop_when=lambda a: a.purpose == "reask")
    assert caught.value.attempts == 3  # the answer's 500 and 200, the re-ask's 500


def test_a_stop_during_a_judge_abandons_the_job(sim_factory: SimFactory, tmp_path: Path) -> None:
    job = a_job(f"@sim{{score=5, status=500, for_model={SONNET}}} Where?", checks=(judge(model=SONNET),))
    spent: list[float] = []
    with pytest.raises(Abandoned) as caught:
        run_job(
            job, sim_factory(), settings_in(tmp_path), stop_when=lambda a: a.purpose == "judge", spent=spent
        )
    assert caught.value.attempts == 2 and len(spent) == 1  # the answer was paid for, and reported
