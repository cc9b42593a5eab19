"""`GET /openapi.json`: the document covers every route of the app, and a live run's API answers
as it says. schemathesis fuzzes a real `anvil run --serve` (simulator in-process, the run in a
subprocess, the shared launcher of tests/test_api_e2e.py) from the document the run serves.

The fuzzed run cannot end under the fuzzing: 2 agents on 200 jobs answered in 2 s each take
minutes, and the operations that could end it sooner are left out (`POST /drain`, checked
alone at the end, stops the run) or cannot (`POST /scale` is bounded by max_agents)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from anvil_cli.exitcodes import ExitCode
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.snapshot.types import Snapshot
from anvil_cli.views.api.bodies import MAX_BODY_BYTES
from anvil_cli.views.api.handlers import PAGE_ROUTES, build_app
from anvil_cli.views.api.openapi import PATHS, document
from anvil_cli.views.api.typed_schema import SchemaSet
from tests.engine_support import write_config, write_jobs
from tests.test_api_e2e import TOKEN, Served, start_served, wait_for
from tests.test_api_server import STATUS, FakeController

N_JOBS = 200
AGENTS = 2
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    unsupported_method,
    ignored_auth,
]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = {
    "headers": AUTH,
    "generation": {"max-examples": 50, "deterministic": True, "database": "none"},
    "seed": 12,
}


def _routes() -> set[tuple[str, str]]:
    """(method, path) of every route of the app, as aiohttp spells the path (`{job_id}`)."""
    with ThreadPoolExecutor(1) as executor:
        app = build_app(FakeController(), TOKEN, executor)
        return {
            (route.method.lower(), route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"  # aiohttp adds HEAD to each GET
        } - PAGE_ROUTES  # the web page's HTML, CSS and JS: not the API


def test_every_route_of_the_app_is_in_the_document_and_no_other() -> None:
    documented = {(method, path) for path, ops in PATHS.items() for method in ops}
    routes = _routes()
    assert routes - documented == set(), "add these routes to PATHS in anvil_cli/views/api/openapi.py"
    assert documented - routes == set(), "PATHS in anvil_cli/views/api/openapi.py lists routes the app lacks"


def eventful_jobs() -> list[dict[str, Any]]:
    """Jobs that fail, retry and are rate limited at once, so the status holds errors, failures
    and alerts; then slow ones that keep the run busy for minutes."""
    quick = "@sim{latency_ms=10"
    jobs = [
        {"id": "refused-1", "prompt": f"{quick}, status=400}} a"},
        {"id": "refused-2", "prompt": f"{quick}, status=400}} b"},
        {"id": "overloaded", "prompt": f"{quick}, fail=529x1}} c"},
        {"id": "limited", "prompt": f"{quick}, fail=429x1}} d"},
    ]
    return jobs + [{"id": f"slow-{i:03d}", "prompt": f"q{i}"} for i in range(N_JOBS)]


def test_the_status_schema_fits_a_snapshot_with_failures_alerts_and_an_open_breaker() -> None:
    """The real builder's snapshot (tests/test_api_server.py: a dead worker, sonnet's breaker open,
    alerts up) against the schema translated from its TypedDicts; then with one value wrong."""
    typed = SchemaSet()
    schema = {**typed.ref(Snapshot), "components": {"schemas": typed.schemas}}
    validator = jsonschema_rs.Draft202012Validator(schema)  # schemathesis' own validator
    assert STATUS["alerts"] and STATUS["breakers"] and STATUS["errors"]["last_failures"]
    assert [e.message for e in validator.iter_errors(STATUS)] == []
    assert not validator.is_valid({**STATUS, "agents": {**STATUS["agents"], "limit": None}})


@contextlib.contextmanager
def eventful_run(tmp_path: Path) -> Iterator[Served]:
    """`anvil run --serve` busy for minutes (2 agents, 200 jobs answered in 2 s each), once its
    first jobs have failed, retried and been rate limited; over budget.warn_usd, so an alert is
    up; its request limit a tenth used, so the limiter says what binds. Drained (killed if it
    will not end) on the way out."""
    with SimServer(SimConfig(latency_ms=2000, seed=3)).start_thread() as sim:
        batch = write_jobs(tmp_path / "b.jsonl", eventful_jobs())
        config = write_config(
            tmp_path / "anvil.yaml",
            sim.base_url,
            scaling={"workers": 1, "max_agents": AGENTS, "max_concurrent_jobs": AGENTS, "min_agents": 1},
            budget={"warn_usd": 1e-9, "max_usd": 1000},
            rate_limits={"default": {"requests_per_minute": 600, "burst_size": 10}},  # ~10% in use
        )
        served = start_served(tmp_path, batch, config)
        try:
            wait_for(
                lambda: (c := served.api.status()["counts"])["failed"] == 2 and c["succeeded"] >= 2,
                what="the quick jobs done",
            )
            yield served
        finally:
            if served.proc.poll() is None:
                with contextlib.suppress(OSError):
                    served.api.post("/drain")
                served.finish(timeout_s=30)  # killed if it did not end by then


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with eventful_run(tmp_path_factory.mktemp("openapi")) as served:
        yield served


@pytest.fixture(scope="module")
def api_schema(live: Served) -> Any:
    return schemathesis.openapi.from_url(
        live.api.url + "/openapi.json",
        config=schemathesis.Config.from_dict(CONFIG),
        headers=AUTH,
    )


def test_the_live_document_is_the_module_s(api_schema: Any, live: Served) -> None:
    assert api_schema.raw_schema == document()
    case = api_schema["/openapi.json"]["GET"].Case()  # schemathesis leaves out the document's own route
    assert case.call_and_validate(headers=AUTH, checks=CHECKS).status_code == 200
    assert live.api.request("GET", "/openapi.json", token="wrong-token")[0] == 401


fuzzed = schemathesis.pytest.from_fixture("api_schema").exclude(path="/drain")


@pytest.fixture
def nodeid_shim(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's `from_fixture` reads `node._nodeid`, which pytest 9.2 removed."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@pytest.mark.slow
@pytest.mark.usefixtures("nodeid_shim")
@fuzzed.parametrize()
def test_the_api_answers_as_documented(case: Case, live: Served) -> None:
    case.call_and_validate(checks=CHECKS)
    assert live.proc.poll() is None, "the fuzzed run ended"


@pytest.mark.parametrize(
    ("path", "job_id"),
    [
        ("/status", None),
        ("/metrics", None),
        ("/jobs/{job_id}", "refused-1"),  # failed: its error
        ("/jobs/{job_id}", "limited"),  # succeeded after a 429
        ("/jobs/{job_id}", f"slow-{N_JOBS - 1:03d}"),  # pending
    ],
)
def test_after_the_fuzzing_the_run_still_answers_as_documented(
    api_schema: Any, live: Served, path: str, job_id: str | None
) -> None:
    """The fuzzing opened breakers, scaled, paused and added jobs: the history and state it left."""
    params = {"job_id": job_id} if job_id else None
    case = api_schema[path]["GET"].Case(path_parameters=params)
    assert case.call_and_validate(headers=AUTH, checks=CHECKS).status_code == 200


def test_a_body_over_16_mib_is_refused_as_documented(api_schema: Any) -> None:
    case = api_schema["/jobs"]["POST"].Case(body={"prompt": "x" * MAX_BODY_BYTES})
    response = case.call_and_validate(headers=AUTH, checks=CHECKS)
    assert response.status_code == 413 and "16 MiB" in response.json()["error"]


def test_drain_answers_as_documented_and_ends_the_run(api_schema: Any, live: Served) -> None:
    case = api_schema["/drain"]["POST"].Case()
    response = case.call_and_validate(headers=AUTH, checks=CHECKS)
    assert response.status_code == 200
    assert live.finish() == ExitCode.INTERRUPTED, live.stderr()
