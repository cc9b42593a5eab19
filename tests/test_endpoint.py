"""The API endpoint is resolved once, in the driver (anvil_cli/config/endpoint.py), and handed to the
workers: a worker's own environment never decides where its calls go."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
from multiprocessing import forkserver
from pathlib import Path

import pytest

from anvil_cli.config.endpoint import DEFAULT_BASE_URL, Endpoint, host_of, resolve_endpoint
from anvil_cli.config.load import load_settings
from anvil_cli.config.settings import Settings
from anvil_cli.engine.worker.clients import make_client
from anvil_cli.errors import UsageError
from anvil_cli.exitcodes import ExitCode
from anvil_cli.session.runner import RunOptions, execute_run
from anvil_cli.sim import SimServer
from tests.engine_support import anvil_cmd, cli_env, journal_query, write_jsonl_batch
from tests.sim_fixtures import fixture_sim, fixture_sim_factory  # noqa: F401

KEY = "sk-test-endpoint-key"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(tmp_path: Path, **file: object) -> Settings:
    path = tmp_path / "anvil.yaml"
    path.write_text(json.dumps({"state_dir": str(tmp_path / ".anvil"), **file}))
    return load_settings(path, env={})


@pytest.mark.parametrize(
    ("file", "env", "url", "origin"),
    [
        (
            {"provider": {"base_url": "http://a:1"}},
            {"ANTHROPIC_BASE_URL": "http://b:2"},
            "http://a:1",
            "provider.base_url",
        ),
        ({}, {"ANTHROPIC_BASE_URL": "http://b:2"}, "http://b:2", "ANTHROPIC_BASE_URL"),
        ({}, {"ANTHROPIC_BASE_URL": ""}, DEFAULT_BASE_URL, "default"),
        ({}, {}, DEFAULT_BASE_URL, "default"),
    ],
)
def test_the_base_url_is_the_config_s_then_the_environment_s_then_the_default(
    tmp_path: Path, file: dict[str, object], env: dict[str, str], url: str, origin: str
) -> None:
    settings = _settings(tmp_path, **file)
    endpoint = resolve_endpoint(settings, {**env, "ANTHROPIC_API_KEY": KEY})
    assert (endpoint.base_url, endpoint.base_url_from) == (url, origin)
    assert endpoint.client_kwargs()["base_url"] == url


def test_credentials_and_headers_as_the_sdk_reads_them(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    headers = "X-Team: search\nbroken line\nX-Trace :  t-1 "
    token_only = resolve_endpoint(
        settings, {"ANTHROPIC_AUTH_TOKEN": "tok-secret", "ANTHROPIC_CUSTOM_HEADERS": headers}
    )
    kwargs = token_only.client_kwargs()
    assert kwargs["auth_token"] == "tok-secret" and "api_key" not in kwargs
    assert kwargs["default_headers"] == {"X-Team": "search", "X-Trace": "t-1"}
    both = resolve_endpoint(settings, {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_AUTH_TOKEN": "t"})
    assert both.client_kwargs()["api_key"] == KEY and both.auth_token is None  # the key wins, as in the SDK
    given = resolve_endpoint(settings, {"ANTHROPIC_API_KEY": "env-key"}, api_key=KEY)
    assert given.api_key == KEY
    for shown in (repr(token_only), repr(both), str(both)):
        assert "tok-secret" not in shown and KEY not in shown and "search" not in shown


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "ANTHROPIC_API_KEY is not set"),
        ({"ANTHROPIC_API_KEY": KEY + "\n"}, "whitespace"),
        ({"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": "localhost:80"}, "is not an http(s) URL"),
        ({"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": "http://h:99999"}, "invalid port"),
    ],
)
def test_a_bad_endpoint_is_a_usage_error(tmp_path: Path, env: dict[str, str], says: str) -> None:
    with pytest.raises(UsageError, match=re.escape(says)) as caught:
        resolve_endpoint(_settings(tmp_path), env)
    assert KEY not in str(caught.value)


def test_host_of_names_host_and_port() -> None:
    assert host_of("https://api.anthropic.com") == "api.anthropic.com:443"
    assert host_of("http://127.0.0.1:9/v1") == "127.0.0.1:9"
    assert host_of("http://[::1]:8080") == "::1:8080"


def test_the_worker_s_client_ignores_its_own_environment(
    monkeypatch: pytest.MonkeyPatch, sim: SimServer
) -> None:
    """What a Ray node (or any worker) has in its environment changes nothing: the client is
    built from the driver's endpoint alone, and a real call reaches the endpoint's server."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "the-node-s-key")
    monkeypatch.setenv("ANTHROPIC_CUSTOM_HEADERS", "X-Node: yes")
    endpoint = Endpoint(sim.base_url, "provider.base_url", api_key=KEY, headers=(("X-Driver", "yes"),))

    async def call() -> tuple[str, str | None, dict[str, object]]:
        client = make_client(endpoint, 10.0, 2)
        try:
            msg = await client.messages.create(
                model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
            return str(client.base_url), client.api_key, {**client.default_headers, "_id": msg.id}
        finally:
            await client.close()

    base, key, headers = asyncio.run(call())
    assert base.rstrip("/") == sim.base_url.rstrip("/") and key == KEY
    assert headers["X-Driver"] == "yes" and "X-Node" not in headers
    assert sim.stats()["requests"] == 1


def _forkserver_environ() -> dict[str, str]:
    pid = forkserver._forkserver._forkserver_pid  # the fork server the workers came from
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_a_run_configured_by_the_environment_alone_hands_it_to_its_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: SimServer
) -> None:
    """No provider.base_url: ANTHROPIC_BASE_URL of the driver's environment reaches the workers
    through their WorkerConfig. Their own environment (the fork server's) has no ANTHROPIC_*."""
    monkeypatch.chdir(tmp_path)  # no anvil.yaml
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
    monkeypatch.setenv("ANTHROPIC_CUSTOM_HEADERS", "X-Team: search")
    batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(6)])
    settings = load_settings(None, env={"ANVIL_STATE_DIR": str(tmp_path / ".anvil")})
    assert settings.provider.base_url is None
    report = execute_run(settings, RunOptions(batch=batch, api_key=KEY))
    assert report.exit_code == ExitCode.OK, report.message
    assert sim.stats()["requests"] == 6
    env = _forkserver_environ()  # every worker was forked from it: this is their environment
    assert not {"ANTHROPIC_BASE_URL", "ANTHROPIC_CUSTOM_HEADERS", "ANTHROPIC_API_KEY"} & set(env)
    rows = journal_query(tmp_path / ".anvil", "SELECT data_json FROM events WHERE kind = 'worker_started'")
    assert rows and {json.loads(str(r[0]))["api"] for r in rows} == {host_of(sim.base_url)}


def test_anvil_run_with_only_environment_variables_reaches_the_simulator(
    tmp_path: Path, sim: SimServer
) -> None:
    """As users run it: no anvil.yaml, the endpoint in ANTHROPIC_BASE_URL; `anvil status` shows
    the host the workers called."""
    batch = write_jsonl_batch(tmp_path / "b.jsonl", [f"q{i}" for i in range(8)])
    env = {**cli_env(KEY), "ANTHROPIC_BASE_URL": sim.base_url}
    assert not (tmp_path / "anvil.yaml").exists()
    run = subprocess.run(
        anvil_cmd("run", str(batch), "-q", "--json"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == ExitCode.OK, run.stderr
    assert json.loads(run.stdout)["counts"]["succeeded"] == 8
    assert sim.stats()["requests"] == 8
    status = subprocess.run(
        anvil_cmd("status", "--json"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(status.stdout)["api_hosts"] == [host_of(sim.base_url)]
    human = subprocess.run(
        anvil_cmd("status"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert f"API at {host_of(sim.base_url)}" in human.stdout
    assert os.environ.get("ANTHROPIC_BASE_URL") != sim.base_url  # the test's own process was not the source


def test_anvil_plan_probes_the_endpoint_anvil_run_would_call(tmp_path: Path, sim: SimServer) -> None:
    """`anvil plan` counts tokens where `anvil run` would call: ANTHROPIC_BASE_URL here, with an
    ANTHROPIC_AUTH_TOKEN instead of a key (one resolution for both commands)."""
    batch = write_jsonl_batch(tmp_path / "b.jsonl", ["a", "b"])
    env = {**cli_env(""), "ANTHROPIC_BASE_URL": sim.base_url, "ANTHROPIC_AUTH_TOKEN": "tok-plan"}
    del env["ANTHROPIC_API_KEY"]
    proc = subprocess.run(
        anvil_cmd("plan", str(batch), "--json"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    notes = " ".join(json.loads(proc.stdout)["notes"])
    # said only once the probe was answered (the simulator does not count count_tokens calls)
    assert f"count_tokens at {sim.base_url} (from ANTHROPIC_BASE_URL)" in notes, notes
    assert "tok-plan" not in proc.stdout + proc.stderr
