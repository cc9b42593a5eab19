"""`endpoints:` from environment variables only (config/sources.py), and the credentials they name
held by the secrets vault (config/vault.py): no process of a run has them in its environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anvil_cli.cli import app
from anvil_cli.config.load import load_settings
from anvil_cli.config.vault import _config_arg, configured_secret_names
from anvil_cli.errors import ConfigError
from anvil_cli.session.context import RunOptions, run_endpoints
from anvil_cli.sim import SimConfig, SimServer
from tests.engine_support import anvil_cmd, cli_env, journal_query, write_config, write_jsonl_batch

runner = CliRunner()

TWO_BY_NUMBER = {
    "ANVIL_ENDPOINTS__0__NAME": "org-a",
    "ANVIL_ENDPOINTS__0__API_KEY_ENV": "KEY_A",
    "ANVIL_ENDPOINTS__0__RATE_LIMITS__DEFAULT__REQUESTS_PER_MINUTE": "4000",
    "ANVIL_ENDPOINTS__1__NAME": "bedrock-east",
    "ANVIL_ENDPOINTS__1__PROVIDER": "bedrock",
    "ANVIL_ENDPOINTS__1__REGION": "us-east-1",
    "ANVIL_ENDPOINTS__1__MODELS__CLAUDE_SONNET_4_6": "us.anthropic.claude-sonnet-4-6",
    "ANVIL_ENDPOINTS__1__RATE_LIMITS__CLAUDE_HAIKU_4_5__BURST_SIZE": "7",
    "ANVIL_SHARED_LIMITS__ORG__ENDPOINTS": "[org-a]",
}
TWO_AS_JSON = {
    "ANVIL_ENDPOINTS": json.dumps(
        [
            {
                "name": "org-a",
                "api_key_env": "KEY_A",
                "rate_limits": {"default": {"requests_per_minute": 4000}},
            },
            {
                "name": "bedrock-east",
                "provider": "bedrock",
                "region": "us-east-1",
                "models": {"claude-sonnet-4-6": "us.anthropic.claude-sonnet-4-6"},
                "rate_limits": {"claude-haiku-4-5": {"burst_size": 7}},
            },
        ]
    ),
    "ANVIL_SHARED_LIMITS": "{org: {endpoints: [org-a]}}",
}


@pytest.mark.parametrize("env", [TWO_BY_NUMBER, TWO_AS_JSON], ids=["numbered", "json"])
def test_two_endpoints_from_variables_only(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./anvil.yaml
    settings = load_settings(None, env=env)
    org, bedrock = settings.endpoints
    assert (org.name, org.api_key_env, org.rate_limits["default"].requests_per_minute) == (
        "org-a",
        "KEY_A",
        4000,
    )
    assert (bedrock.provider, bedrock.region) == ("bedrock", "us-east-1")
    assert bedrock.models == {"claude-sonnet-4-6": "us.anthropic.claude-sonnet-4-6"}
    assert bedrock.rate_limits["claude-haiku-4-5"].burst_size == 7
    assert settings.shared_limits["org"].endpoints == ["org-a"]
    endpoints = run_endpoints(settings, RunOptions(batch=tmp_path / "b.jsonl", simulate=True))
    assert [e.name for e in endpoints] == ["org-a", "bedrock-east"]


def test_a_numbered_variable_sets_a_field_of_the_files_entry(tmp_path: Path) -> None:
    path = tmp_path / "anvil.yaml"
    path.write_text("endpoints:\n  - name: org-a\n    api_key_env: KEY_A\n")
    env = {"ANVIL_ENDPOINTS__0__API_KEY_ENV": "KEY_A2", "ANVIL_ENDPOINTS__1__NAME": "org-b"}
    settings = load_settings(path, env=env)
    assert [(e.name, e.api_key_env) for e in settings.endpoints] == [("org-a", "KEY_A2"), ("org-b", None)]
    # the whole list in one variable replaces the file's
    settings = load_settings(path, env={"ANVIL_ENDPOINTS": "[{name: only}]"})
    assert [e.name for e in settings.endpoints] == ["only"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {
                "ANVIL_ENDPOINTS__0__NAME": "a",
                "ANVIL_ENDPOINTS__1__NAME": "b",
                "ANVIL_ENDPOINTS__1__PROVIDER": "bedrok",
            },
            "environment variable ANVIL_ENDPOINTS__1__PROVIDER: field 'endpoints[1].provider': Input",
        ),
        (
            {"ANVIL_ENDPOINTS": '[{"name": "a"}, {"name": "b", "provider": "vertex", "project_id": "p"}]'},
            "environment variable ANVIL_ENDPOINTS: field 'endpoints[1].region': a vertex endpoint needs",
        ),
        (
            {"ANVIL_ENDPOINTS__0__NAME": "a", "ANVIL_ENDPOINTS__2__NAME": "c"},
            "endpoints[2]: there is no endpoints[1]; number the entries from 0 without gaps",
        ),
        (
            {"ANVIL_ENDPOINTS__NAME": "a"},
            "environment variable ANVIL_ENDPOINTS__NAME: endpoints is a list: number its entries from 0",
        ),
        (
            {"ANVIL_ENDPOINTS__0__NAME": "a", "ANVIL_ENDPOINTS__1__NAME": "a"},
            "environment variable ANVIL_ENDPOINTS__1__NAME: field 'endpoints[1].name': endpoint name 'a' is",
        ),
    ],
)
def test_errors_name_the_variable(
    tmp_path: Path, env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env=env)
    assert any(expected in str(p) for p in caught.value.problems), caught.value.problems


def test_a_command_is_still_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a value written as `{...}` is a mapping: `echo a: b` stays the command it is."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, env={"ANVIL_ALERTS__COMMAND": "echo a: b"})
    assert settings.alerts.command == "echo a: b"


def test_validate_with_variables_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in TWO_BY_NUMBER.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KEY_A", raising=False)
    batch = write_jsonl_batch(tmp_path / "batch.jsonl", ["hi"])
    result = runner.invoke(app, ["validate", str(batch)])
    assert result.exit_code == 2
    assert (
        "environment variable ANVIL_ENDPOINTS__0__API_KEY_ENV: field 'endpoints[0].api_key_env': "
        "endpoints[0] (org-a): api_key_env: the variable KEY_A is not set" in result.stderr
    )
    monkeypatch.setenv("KEY_A", "sk-ant-x")
    assert runner.invoke(app, ["validate", str(batch)]).exit_code == 0


@pytest.mark.slow
def test_a_simulated_run_configured_by_variables_only(tmp_path: Path) -> None:
    """`anvil run --simulate` with two endpoints from the environment alone: both resolved (no
    credential needed), the run completes."""
    batch = write_jsonl_batch(tmp_path / "batch.jsonl", [f"q{i}" for i in range(4)])
    env = {
        **cli_env(),
        **TWO_BY_NUMBER,
        "ANVIL_STATE_DIR": str(tmp_path / ".anvil"),
        "ANVIL_SCALING__WORKERS": "1",
    }
    del env["ANTHROPIC_API_KEY"]
    argv = anvil_cmd("run", str(batch), "--simulate", "--json", "-q")
    done = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    assert journal_query(tmp_path / ".anvil", "SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'") == [(4,)]


# -- the vault --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        (["run", "b.yaml", "-c", "x.yaml"], "x.yaml"),
        (["run", "--config", "x.yaml", "b.yaml"], "x.yaml"),
        (["validate", "--config=x.yaml", "b"], "x.yaml"),
        (["plan", "-cx.yaml"], "x.yaml"),
        (["run", "b.yaml"], None),
        (["run", "--", "-c", "x.yaml"], None),
    ],
)
def test_the_config_file_of_the_command_line(argv: list[str], path: str | None) -> None:
    assert _config_arg(argv) == path


def test_the_secret_names_come_from_the_file_and_the_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "endpoints:\n  - {name: a, api_key_env: KEY_A}\n  - {name: b, provider: bedrock, region: us-east-1}\n"
        "  - {name: f, provider: foundry, resource: r}\n  - {name: v, provider: vertex, region: global}\n"
    )
    names = configured_secret_names(
        ["run", "x", "-c", str(config)], {"ANVIL_ENDPOINTS__3__AUTH_TOKEN_ENV": "GTOK"}
    )
    assert names == (
        "KEY_A",
        "AWS_BEARER_TOKEN_BEDROCK",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "ANTHROPIC_FOUNDRY_API_KEY",
        "GTOK",
    )
    monkeypatch.chdir(tmp_path)  # no ./anvil.yaml, no endpoint variables: nothing beyond the fixed names
    assert configured_secret_names(["run", "x"], {"SERPAPI_API_KEY": "k"}) == ()
    assert configured_secret_names(["run", "x", "-c", "missing.yaml"], {}) == ()


def test_a_process_started_with_a_named_credential_runs_again_without_it(tmp_path: Path) -> None:
    (tmp_path / "anvil.yaml").write_text("endpoints:\n  - {name: a, api_key_env: KEY_A}\n")
    script = tmp_path / "probe.py"
    script.write_text(
        textwrap.dedent("""
        import os
        from anvil_cli.config.vault import hand_over, secret
        hand_over()
        environ = open(f"/proc/{os.getpid()}/environ", "rb").read()
        print("key", secret("KEY_A"), secret("KEY_B"))
        print("in-environ", b"KEY_A=" in environ, "KEY_A" in os.environ)
        print("tool-key", os.environ.get("TOOL_API_KEY"))
    """)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "ANTHROPIC_"))}
    env.update(
        KEY_A="sk-a", KEY_B="sk-b", ANVIL_ENDPOINTS__1__NAME="b", ANVIL_ENDPOINTS__1__API_KEY_ENV="KEY_B"
    )
    env["TOOL_API_KEY"] = "for-a-tool"  # named by no endpoint: left to the tools that need it
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.splitlines() == ["key sk-a sk-b", "in-environ False False", "tool-key for-a-tool"]


@pytest.fixture(name="slow_sim")
def fixture_slow_sim() -> Iterator[SimServer]:
    """Calls take ~1.5 s: the run's processes are all there while a call is in flight."""
    server = SimServer(SimConfig(latency_ms=1500)).start_thread()
    yield server
    server.stop()


@pytest.mark.slow
def test_no_process_of_a_run_has_an_endpoints_credential(tmp_path: Path, slow_sim: SimServer) -> None:
    """Two endpoints (one from the file, one from a variable) with keys in KEY_A and KEY_B: no
    process of the run (conductor, fork server, workers, the Manager, tools) has them."""
    key_a, key_b = f"sk-ant-a-{uuid.uuid4().hex}", f"sk-ant-b-{uuid.uuid4().hex}"
    write_jsonl_batch(tmp_path / "batch.jsonl", [f"question {i}" for i in range(4)])
    endpoint = {"name": "org-a", "api_key_env": "KEY_A", "base_url": slow_sim.base_url}
    write_config(
        tmp_path / "anvil.yaml",
        slow_sim.base_url,
        scaling={"workers": 2, "max_agents": 2},
        endpoints=[endpoint],
    )
    env = cli_env()
    del env["ANTHROPIC_API_KEY"]
    env.update(KEY_A=key_a, KEY_B=key_b)
    env.update(ANVIL_ENDPOINTS__1__NAME="org-b", ANVIL_ENDPOINTS__1__API_KEY_ENV="KEY_B")
    env["ANVIL_ENDPOINTS__1__BASE_URL"] = slow_sim.base_url
    argv = anvil_cmd("run", "batch.jsonl", "-c", "anvil.yaml", "-q")
    proc = subprocess.Popen(
        argv,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        while slow_sim.stats()["requests"] == 0:
            if proc.poll() is not None:
                raise AssertionError(f"the run ended first: {proc.communicate()}")
            threading.Event().wait(0.05)  # sleep-ok: polling another process's progress, not timing it
        leaks = []
        for pid in Path("/proc").iterdir():
            if not pid.name.isdigit() or int(pid.name) == os.getpid():
                continue
            try:
                text = (pid / "environ").read_bytes()
            except OSError:
                continue
            if key_a.encode() in text or key_b.encode() in text or b"KEY_A=" in text:
                leaks.append(pid.name)
        assert leaks == []
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err  # the key still reached the API
    assert key_a not in out + err and key_b not in out + err


def test_a_mistaken_variable_name_never_takes_path_away(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("endpoints:\n  - {name: a, api_key_env: PATH}\n  - {name: b, api_key_env: KEY_B}\n")
    assert configured_secret_names(["-c", str(config)], {}) == ("KEY_B",)


# Records whether the endpoints' credentials are in the tool's environment or its parent's (the
# worker's) /proc environ, and whether a variable no endpoint names is still there for it.
LOOK = """
import json, os, sys
parent = open(f"/proc/{os.getppid()}/environ", "rb").read()
seen = {"own": [n for n in ("KEY_A", "KEY_B") if n in os.environ],
        "parent": [n for n in ("KEY_A", "KEY_B") if n.encode() + b"=" in parent],
        "tool_key": os.environ.get("TOOL_API_KEY")}
open(os.path.join(sys.argv[1], os.path.basename(os.getcwd()) + ".json"), "w").write(json.dumps(seen))
print("looked")
"""


def test_a_tool_sees_no_endpoint_credential(tmp_path: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    look = {
        "name": "look",
        "description": "d",
        "input_schema": {"type": "object"},
        "anvil_command": [sys.executable, "-c", LOOK, str(report)],
    }
    batch = tmp_path / "b.jsonl"
    batch.write_text(
        json.dumps({"id": "agent", "prompt": "look around", "model": "claude-haiku-4-5", "tools": [look]})
    )
    with SimServer(SimConfig(seed=4)).start_thread() as sim:
        endpoints = [
            {"name": "org-a", "api_key_env": "KEY_A", "base_url": sim.base_url},
            {"name": "org-b", "api_key_env": "KEY_B", "base_url": sim.base_url},
        ]
        run = {"tool_write_paths": [str(report)]}
        config = write_config(tmp_path / "anvil.yaml", sim.base_url, run=run, endpoints=endpoints)
        env = cli_env()
        del env["ANTHROPIC_API_KEY"]
        env.update(KEY_A="sk-ant-a-tool", KEY_B="sk-ant-b-tool", TOOL_API_KEY="for-the-tool")
        argv = anvil_cmd("run", str(batch), "--config", str(config), "--json")
        done = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
        )
    assert done.returncode == 0, done.stderr
    (seen,) = [json.loads(p.read_text()) for p in report.iterdir()]
    assert seen == {"own": [], "parent": [], "tool_key": "for-the-tool"}
