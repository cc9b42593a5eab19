"""How many worker processes a local run starts: as many as its configured limits can keep busy
(policy/workers.py), one for the usual run that waits on the API, one per CPU for a run whose
limits let calls come faster than one worker serves; `scaling.workers` always obeyed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from anvil_cli.config.settings import Settings
from anvil_cli.engine.conductor.core import workers_for
from anvil_cli.exitcodes import ExitCode
from anvil_cli.policy.workers import RPM_PER_WORKER, request_rate_bound, workers_needed
from anvil_cli.sim import SimServer
from tests.engine_support import journal_query, run_inprocess, write_config, write_jsonl_batch
from tests.sim_fixtures import fixture_sim, fixture_sim_factory  # noqa: F401

HAIKU, SONNET, OPUS = "claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5"


def _settings(**raw: Any) -> Settings:
    return Settings.model_validate(raw)


def test_the_bound_is_the_rate_of_every_pool_the_models_draw_from() -> None:
    s = _settings(rate_limits={"default": {"requests_per_minute": 1000}, OPUS: {"requests_per_minute": 50}})
    # one pool per entry and model class: haiku (also the default judge) and sonnet under
    # `default`, opus under its own entry
    assert request_rate_bound(s, [SONNET, OPUS]) == 1000 + 1000 + 50
    assert request_rate_bound(s, [HAIKU]) == 1000  # the judge's pool is the job's
    # two models of one class share its pool
    assert request_rate_bound(s, [HAIKU, "claude-haiku-3-5"]) == 1000


def test_fallbacks_auto_and_endpoints_count() -> None:
    s = _settings(routing={"fallbacks": {SONNET: [OPUS]}})
    assert request_rate_bound(s, [SONNET]) == 3 * 300  # sonnet, its fallback opus, the judge's haiku
    auto = request_rate_bound(_settings(), ["auto"])  # each complexity's routing model
    assert auto >= 300 and auto % 300 == 0
    two = _settings(
        endpoints=[
            {"name": "a", "rate_limits": {"default": {"requests_per_minute": 4000}}},
            {"name": "b", "rate_limits": {"default": {"requests_per_minute": 6000}}},
        ]
    )
    assert request_rate_bound(two, [HAIKU]) == 10_000  # every endpoint's pools


def test_one_worker_unless_the_limits_let_calls_come_faster() -> None:
    assert workers_needed(_settings(), [SONNET], cpus=8) == 1  # the default 300/min
    near = {"default": {"requests_per_minute": RPM_PER_WORKER / 2}}  # two pools: sonnet, the judge's haiku
    assert workers_needed(_settings(rate_limits=near), [SONNET], cpus=8) == 1
    above = {"default": {"requests_per_minute": RPM_PER_WORKER}}
    assert workers_needed(_settings(rate_limits=above), [SONNET], cpus=8) == 2
    unlimited = {"default": {"requests_per_minute": 10**7}}
    assert workers_needed(_settings(rate_limits=unlimited), [SONNET], cpus=2) == 2  # one per CPU at most
    assert workers_needed(_settings(scaling={"workers": 3}), [SONNET], cpus=2) == 3  # as the user said


def test_ray_keeps_one_per_cpu_and_agents_cap_both() -> None:
    ray = _settings(run={"backend": "ray"}, scaling={"workers": 4})
    assert workers_for(ray, agent_limit=100, models=[SONNET]) == 4
    assert workers_for(_settings(scaling={"workers": 4}), agent_limit=2, models=[SONNET]) == 2


def test_a_run_at_the_default_limits_starts_one_worker(tmp_path: Path, sim: SimServer) -> None:
    """As users run it, with nothing about workers or limits in the config: one worker started
    (the journal's worker_started events), every job done."""
    config = write_config(
        tmp_path / "anvil.yaml",
        sim.base_url,
        scaling={"workers": None},
        rate_limits={"default": {"requests_per_minute": 300, "burst_size": 50}},  # the defaults
    )
    batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(6)])
    report = run_inprocess(config, batch)
    assert report.exit_code == ExitCode.OK, report.message
    rows = journal_query(tmp_path / ".anvil", "SELECT data_json FROM events WHERE kind = 'worker_started'")
    assert [json.loads(str(r[0]))["worker"] for r in rows] == [0]
    assert journal_query(tmp_path / ".anvil", "SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'") == [(6,)]
