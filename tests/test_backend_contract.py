"""The backend contract (tests/backend_contract.py) kept by the stub backend and by local worker
processes calling the simulator through a real governor. The same test, on Ray actors:
tests/on_ray/test_ray_backend_contract.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.engine.backends.local import LocalBackend
from anvil_cli.engine.backends.stub import StubBackend, answer
from anvil_cli.engine.governor_host.manager import start_governor
from anvil_cli.engine.process.forkserver import worker_context
from anvil_cli.engine.worker.config import WorkerConfig
from tests.backend_contract import Case, check_backend_contract, contract_settings, journal_rows
from tests.sim_fixtures import SimFactory, fixture_sim_factory  # noqa: F401


def stub_case(tmp_path: Path) -> Iterator[Case]:
    settings = contract_settings(tmp_path, "http://127.0.0.1:9")
    _, rows = journal_rows(settings, tmp_path)
    yield Case(StubBackend(on_job=answer()), rows)


def local_case(tmp_path: Path, sim_factory: SimFactory) -> Iterator[Case]:
    sim = sim_factory()
    settings = contract_settings(tmp_path, sim.base_url)
    run_id, rows = journal_rows(settings, tmp_path)
    endpoint = Endpoint(sim.base_url, "the simulator", api_key="test-key")
    ctx = worker_context()
    manager, governor = start_governor(settings, ctx)
    settings_json = settings.model_dump_json()

    def make_config(wid: int) -> WorkerConfig:
        return WorkerConfig(wid, settings_json, (endpoint,), 4, os.getpid(), run_id)

    backend = LocalBackend(ctx, make_config, governor)
    try:
        yield Case(backend, rows)
    finally:
        backend.kill()
        manager.shutdown()


@pytest.fixture(params=["stub", "local"])
def contract_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    if request.param == "stub":
        yield from stub_case(tmp_path)
    else:
        yield from local_case(tmp_path, request.getfixturevalue("sim_factory"))


def test_a_backend_keeps_the_contract(contract_case: Case) -> None:
    check_backend_contract(contract_case)
