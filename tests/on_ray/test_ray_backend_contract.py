"""The backend contract (tests/backend_contract.py) kept by Ray worker actors on the two-node
test cluster, calling the simulator through the governor actor: the very test the stub and the
local backend pass (tests/test_backend_contract.py), given a Ray case."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.engine.worker.config import WorkerConfig
from tests.backend_contract import Case, contract_settings, journal_rows
from tests.sim_fixtures import SimFactory, fixture_sim_factory  # noqa: F401
from tests.test_backend_contract import test_a_backend_keeps_the_contract  # noqa: F401  (collected here too)

from .conftest import LocalCluster

pytestmark = pytest.mark.ray


@pytest.fixture(params=["ray"])
def contract_case(tmp_path: Path, ray_cluster: LocalCluster, sim_factory: SimFactory) -> Iterator[Case]:
    import ray

    from anvil_cli.engine.backends.ray_backend import RayBackend
    from anvil_cli.engine.governor_host.ray_actor import RayGovernorHost
    from anvil_cli.session.ray_run import connect

    sim = sim_factory()
    ray_section = {"address": ray_cluster.address, "worker_cpus": 1}
    settings = contract_settings(tmp_path, sim.base_url, run={"backend": "ray"}, ray=ray_section)
    run_id, rows = journal_rows(settings, tmp_path)
    endpoint = Endpoint(sim.base_url, "the simulator", api_key="test-key")
    settings_json = settings.model_dump_json()

    def make_config(wid: int) -> WorkerConfig:
        return WorkerConfig(wid, settings_json, (endpoint,), 4, os.getpid(), run_id)

    connect(settings)
    host = RayGovernorHost(settings, run_id, 0.0)
    backend = RayBackend(settings, make_config, host.client)
    try:
        yield Case(backend, rows)
    finally:
        backend.kill()
        host.shutdown()
        ray.shutdown()
