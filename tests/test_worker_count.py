"""How many worker processes a run starts: `scaling.workers`, or (auto, the default) one per
AGENTS_PER_WORKER agents of the agent limit, at most one per CPU, never more than agents."""

from __future__ import annotations

import pytest

from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import AGENTS_PER_WORKER, Settings
from anvil_cli.engine.conductor.core import workers_for


def _settings(scaling: dict[str, object], env: dict[str, str] | None = None) -> Settings:
    return load_settings(env=env or {}, overrides={"scaling": scaling})


@pytest.fixture
def four_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("anvil_cli.config.settings.os.cpu_count", lambda: 4)


@pytest.mark.usefixtures("four_cpus")
def test_auto_is_one_worker_per_so_many_agents_at_most_one_per_cpu() -> None:
    default = load_settings(env={})
    assert default.scaling.workers is None  # auto
    assert default.scaling.worker_count() == 1  # 100 agents, 4 CPUs: one worker, not four
    at = AGENTS_PER_WORKER
    for agents, workers in [(1, 1), (at, 1), (at + 1, 2), (3 * at, 3), (100 * at, 4)]:
        settings = _settings({"max_agents": agents, "max_concurrent_jobs": agents, "min_agents": 1})
        assert settings.scaling.worker_count() == workers, agents
    # the agent limit is the smaller of the two
    assert _settings({"max_agents": 3 * at, "max_concurrent_jobs": at}).scaling.worker_count() == 1


@pytest.mark.usefixtures("four_cpus")
def test_auto_can_be_written_and_a_number_is_kept() -> None:
    assert _settings({"workers": "auto"}).scaling.workers is None
    assert _settings({}, env={"ANVIL_SCALING__WORKERS": "auto"}).scaling.worker_count() == 1
    assert _settings({"workers": 3}).scaling.worker_count() == 3  # even for 100 agents
    assert _settings({"workers": 8}).scaling.worker_count() == 8  # a number is not capped by the CPUs


def test_workers_never_outnumber_agents() -> None:
    settings = _settings({"workers": 3, "max_agents": 2, "min_agents": 1, "max_concurrent_jobs": 2})
    assert workers_for(settings, settings.scaling.agent_limit()) == 2
    assert workers_for(_settings({}), 100) == 1
