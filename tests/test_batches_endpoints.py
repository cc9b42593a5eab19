"""`--mode batches` with `endpoints:`: Message Batches go to the first Anthropic API endpoint (the
run says so once), and without one the run is refused before anything is written."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from anvil_cli.config.endpoint import Endpoint
from anvil_cli.config.load import load_settings
from anvil_cli.engine.modes.batches.endpoint import batches_endpoint, require_batches_endpoint
from anvil_cli.errors import UsageError
from anvil_cli.exitcodes import ExitCode
from anvil_cli.session import runner
from anvil_cli.session.runner import RunOptions, execute_run
from anvil_cli.sim import SimConfig, SimServer
from anvil_cli.snapshot.monitor import NoScreen, RunMonitor
from tests.engine_support import journal_query, read_results, run_cli, write_config, write_jobs

FAST_BATCHES = {"max_requests": 8, "poll_interval_s": 0.05, "max_attempts": 3}
BEDROCK_ONLY = [
    {"name": "bedrock-east", "provider": "bedrock", "region": "us-east-1"},
    {"name": "vertex-eu", "provider": "vertex", "region": "europe-west1", "project_id": "p"},
]


def _endpoint(name: str, provider: str, base_url: str = "http://127.0.0.1:9") -> Endpoint:
    return Endpoint(base_url, f"endpoints: {name}", api_key="k", name=name, provider=provider)


def test_the_first_anthropic_endpoint_is_chosen_and_the_others_are_named() -> None:
    endpoints = (
        _endpoint("bedrock-east", "bedrock"),
        _endpoint("org-a", "anthropic"),
        _endpoint("vertex-eu", "vertex"),
        _endpoint("org-b", "anthropic"),
    )
    chosen, note = batches_endpoint(endpoints)
    assert chosen.name == "org-a"
    assert note == (
        "Message Batches run on endpoint org-a; not used in batches mode:"
        " bedrock-east (bedrock), vertex-eu (vertex), org-b (anthropic)"
    )


def test_the_run_s_only_endpoint_is_used_without_a_note() -> None:
    only = Endpoint("https://api.anthropic.com", "default", api_key="k")
    assert batches_endpoint((only,)) == (only, None)


def test_no_anthropic_endpoint_is_refused_naming_what_there_is() -> None:
    with pytest.raises(UsageError, match=r"provider: anthropic.*bedrock-east \(bedrock\)"):
        batches_endpoint((_endpoint("bedrock-east", "bedrock"),))


def test_settings_without_an_anthropic_endpoint_are_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "anvil.yaml", "http://127.0.0.1:9", endpoints=BEDROCK_ONLY)
    with pytest.raises(UsageError, match=r"--mode batches needs an endpoint with provider: anthropic"):
        require_batches_endpoint(load_settings(config, env={}))
    # without endpoints: (the ANTHROPIC_* endpoint) and with an anthropic one: nothing to refuse
    require_batches_endpoint(load_settings(write_config(tmp_path / "b.yaml", "http://127.0.0.1:9"), env={}))
    mixed = [*BEDROCK_ONLY, {"name": "org-a", "api_key_env": "KEY_A"}]
    require_batches_endpoint(
        load_settings(write_config(tmp_path / "c.yaml", "http://x", endpoints=mixed), env={})
    )


@pytest.mark.slow
def test_anvil_run_refuses_batches_without_anthropic_endpoint_before_writing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "anvil.yaml", "http://127.0.0.1:9", endpoints=BEDROCK_ONLY)
    batch = write_jobs(tmp_path / "b.jsonl", [{"id": "a", "prompt": "hi"}])
    proc = run_cli("run", str(batch), "--config", str(config), "--mode", "batches", cwd=tmp_path)
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stderr
    assert "provider: anthropic" in proc.stderr and "bedrock-east (bedrock)" in proc.stderr
    assert not (tmp_path / ".anvil").exists()  # nothing written


class _Notes(NoScreen):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, line: str) -> None:
        self.lines.append(line)


def test_batches_run_on_the_anthropic_endpoint_and_say_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = [{"id": f"j{i}", "prompt": f"q {i}"} for i in range(10)]
    with SimServer(
        SimConfig(seed=3, output_tokens=20, batch_seconds_per_request=0.001)
    ).start_thread() as sim:
        # a bedrock endpoint listed first, at an address nothing answers: batches never go there
        endpoints = (
            _endpoint("bedrock-east", "bedrock"),
            _endpoint("org-a", "anthropic", sim.base_url),
            _endpoint("org-b", "anthropic"),
        )

        def run_endpoints(settings: Any, opts: Any) -> tuple[Endpoint, ...]:
            return endpoints

        monkeypatch.setattr(runner, "run_endpoints", run_endpoints)
        config = write_config(
            tmp_path / "anvil.yaml", sim.base_url, batches=FAST_BATCHES, cache={"enabled": False}
        )
        settings = load_settings(config, env={})
        batch = write_jobs(tmp_path / "b.jsonl", jobs)
        screen = _Notes()
        monitor = RunMonitor(settings, screen, batch_path=str(batch))
        out = tmp_path / "out.jsonl"
        report = execute_run(settings, RunOptions(batch=batch, output=out, mode="batches"), monitor=monitor)
        assert report.exit_code == ExitCode.OK, report.summary
        assert sim.stats()["batches_created"] == 2
    assert {r["status"] for r in read_results(out)} == {"succeeded"}
    # each job's call is journaled as made through org-a
    logs = journal_query(tmp_path / ".anvil", "SELECT attempts_json FROM jobs")
    assert len(logs) == 10
    assert {a["endpoint"] for (log,) in logs for a in json.loads(str(log))} == {"org-a"}
    said = [line for line in screen.lines if line.startswith("Message Batches run on endpoint")]
    assert said == [
        "Message Batches run on endpoint org-a; not used in batches mode:"
        " bedrock-east (bedrock), org-b (anthropic)"
    ]


def test_the_run_context_s_first_endpoint_is_not_assumed_anthropic() -> None:
    bedrock = _endpoint("bedrock-east", "bedrock")
    org = replace(bedrock, name="org-a", provider="anthropic")
    assert batches_endpoint((bedrock, org))[0] is org
