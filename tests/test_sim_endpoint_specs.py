"""Describing simulated endpoints: `anvil simulate --endpoint/--shared` and their specs, and the
checks a simulator with endpoints makes at start."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import anvil_cli.sim.server as sim_server
from anvil_cli.cli import app
from anvil_cli.sim.config import EndpointSim, SharedSim, SimConfig
from anvil_cli.sim.core import SimCore
from anvil_cli.sim.specs import parse_endpoint, parse_shared


def test_endpoint_spec_of_the_cli() -> None:
    assert parse_endpoint("org-a:rpm=600,burst=20,off_after=30") == (
        "org-a",
        EndpointSim(rpm=600, burst=20, off_after_s=30),
    )
    name, tiered = parse_endpoint("b:tier=2,rpm=10,provider=vertex,off_for=5")
    assert (name, tiered.rpm, tiered.itpm, tiered.provider, tiered.off_for_s) == (
        "b",
        10,
        450_000,
        "vertex",
        5,
    )
    assert parse_endpoint("plain") == ("plain", EndpointSim())


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("a:rpm", "not key=value"),
        ("a:rpm=x", "needs a number"),
        ("a:rpm=0", "above 0"),
        ("a:colour=red", "unknown key"),
        ("a:tier=9", "unknown tier"),
        ("a:provider=azure", "unknown provider"),
        ("a/b:rpm=1", "letters, digits"),
        (":rpm=1", "letters, digits"),
    ],
)
def test_bad_endpoint_specs_say_why(spec: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_endpoint(spec)


def test_shared_spec_of_the_cli() -> None:
    assert parse_shared("org:endpoints=a+b,rpm=900,burst=30") == (
        "org",
        SharedSim(endpoints=("a", "b"), rpm=900, burst=30),
    )
    with pytest.raises(ValueError, match="expected NAME:endpoints"):
        parse_shared("org:rpm=900")
    with pytest.raises(ValueError, match="unknown key 'provider'"):
        parse_shared("org:endpoints=a,provider=bedrock")


def test_a_bad_endpoint_name_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        SimCore(SimConfig(endpoints={"a b": EndpointSim()}))


def test_the_cli_serves_the_endpoints_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[SimConfig] = []
    monkeypatch.setattr(sim_server, "serve_forever", lambda config, on_ready: served.append(config))
    args = ["simulate", "--port", "0", "--endpoint", "a:rpm=600,burst=20", "--endpoint", "b:provider=bedrock"]
    result = CliRunner().invoke(app, [*args, "--shared", "org:endpoints=a+b,rpm=900"], prog_name="anvil")
    assert result.exit_code == 0, result.output
    (config,) = served
    assert config.endpoints == {"a": EndpointSim(rpm=600, burst=20), "b": EndpointSim(provider="bedrock")}
    assert config.shared == {"org": SharedSim(endpoints=("a", "b"), rpm=900)}


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--endpoint", "a:rpm=0"], "must be above 0"),
        (["--endpoint", "a", "--endpoint", "a"], "given twice"),
        (["--endpoint", "a", "--shared", "org:endpoints=a+z"], "names no simulated endpoint"),
    ],
)
def test_the_cli_refuses_bad_endpoints(args: list[str], problem: str) -> None:
    result = CliRunner().invoke(app, ["simulate", *args], env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert result.exit_code == 2 and problem in result.output
